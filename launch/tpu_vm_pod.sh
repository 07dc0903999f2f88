#!/usr/bin/env bash
# Pretraining on a Cloud TPU VM pod slice: create it, install mssl on every host, run.
#
#   launch/tpu_vm_pod.sh create      # once: the TPU VM slice
#   launch/tpu_vm_pod.sh setup       # once: clone + install on every worker
#   launch/tpu_vm_pod.sh run configs/mssl_r50.py gs://BUCKET/mssl_r50 [--config.flag=...]
#   launch/tpu_vm_pod.sh delete
#
# Assumptions (edit the variables below or set them in the environment):
# * gcloud is installed and authenticated, with the TPU API enabled in $PROJECT;
# * $REPO is a git URL every worker can clone; the data are tfds datasets prepared in a
#   GCS bucket ($DATA_DIR, e.g. gs://BUCKET/tensorflow_datasets; ImageNet needs its manual
#   preparation once, see the README) and WORKDIR is a gs:// path every host can write;
# * one process per host: `gcloud ... ssh --worker=all` starts `python -m mssl.main` on
#   every host at once, and jax.distributed.initialize() (no arguments) finds the
#   coordinator, the process count and the process id from the TPU metadata;
# * the global batch (config.batch_size) is a multiple of the slice's chip count.
# Preemptible / spot slices: Orbax notices the preemption, mssl saves and exits; running
# `run` again with the same WORKDIR resumes.
set -euo pipefail
PROJECT=${PROJECT:-my-project}
ZONE=${ZONE:-us-central2-b}
TPU_NAME=${TPU_NAME:-mssl-pod}
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
REPO=${REPO:-https://github.com/YOUR_ORG/mssl.git}
DATA_DIR=${DATA_DIR:-gs://my-bucket/tensorflow_datasets}

ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
    --worker=all --command="$1"
}

case "${1:-}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" \
      --accelerator-type="$ACCELERATOR" --version="$RUNTIME" ;;
  setup)
    printf -v REPO_Q '%q' "$REPO"
    ssh_all "set -e; [ -d mssl ] || git clone $REPO_Q mssl; cd mssl && git pull && \
      python3 -m pip install -q -U pip && python3 -m pip install -q -e . 'jax[tpu]'" ;;
  run)
    CONFIG=$2; WORKDIR=$3; shift 3
    # ssh carries one command string: every value in it is quoted for the remote bash
    # (printf %q), so a workdir or flag is passed as it is and never run as shell.
    printf -v ARGS '%q ' --config="$CONFIG" --workdir="$WORKDIR" \
      --config.data.data_dir="$DATA_DIR" --config.distributed.initialize=True "$@"
    printf -v DATA '%q' "$DATA_DIR"
    ssh_all "cd mssl && TFDS_DATA_DIR=$DATA python3 -m mssl.main $ARGS 2>&1 \
      | tee -a ~/mssl_run.log" ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --project="$PROJECT" --zone="$ZONE" --quiet ;;
  *)
    sed -n '2,8p' "$0"; exit 2 ;;
esac
