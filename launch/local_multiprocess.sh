#!/usr/bin/env bash
# Multi-host training on one machine: N local processes joined by jax.distributed.
#
#   launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS CONFIG WORKDIR [flags...]
#   launch/local_multiprocess.sh 2 2 configs/quickstart.py /tmp/mp_run --config.total_steps=20
#
# Assumptions (stated, not checked):
# * one machine, CPU only: each process simulates DEVICES_PER_PROCESS devices
#   (XLA_FLAGS=--xla_force_host_platform_device_count) and the processes exchange data
#   with gloo (mssl.main sets jax_cpu_collectives_implementation=gloo when it
#   initialises jax.distributed);
# * the coordinator is process 0 on 127.0.0.1:$PORT (default: a free port is picked);
# * all processes share WORKDIR (a local path), as hosts of a pod share a bucket;
# * the global batch (config.batch_size) is a multiple of NUM_PROCESSES x DEVICES.
# Logs of process i go to WORKDIR/logs/process_i.log; the exit status is the first
# failing process's (0 when all succeed). Ctrl-C stops every process.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  sed -n '2,5p' "$0"; exit 2
fi
NUM_PROCESSES=$1; DEVICES=$2; CONFIG=$3; WORKDIR=$4; shift 4
PYTHON=${PYTHON:-python}
PORT=${PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$WORKDIR/logs"
cd "$(dirname "$0")/.."

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < NUM_PROCESSES; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=$DEVICES" JAX_PLATFORMS=cpu \
    "$PYTHON" -m mssl.main --config="$CONFIG" --workdir="$WORKDIR" \
      --config.distributed.initialize=True \
      --config.distributed.coordinator_address="127.0.0.1:$PORT" \
      --config.distributed.num_processes="$NUM_PROCESSES" \
      --config.distributed.process_id="$i" "$@" \
      > "$WORKDIR/logs/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  code=0
  wait "${pids[$i]}" || code=$?
  if [[ $code -ne 0 ]]; then
    echo "process $i failed (exit $code); see $WORKDIR/logs/process_$i.log" >&2
    if [[ $status -eq 0 ]]; then status=$code; fi
  fi
done
if [[ $status -eq 0 ]]; then echo "all $NUM_PROCESSES processes finished; logs in $WORKDIR/logs"; fi
exit $status
