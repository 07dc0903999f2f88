"""Tests for benchmarks/step.py and its FLOP counter (benchmarks/flops.py)."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mssl import models
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import flops  # noqa: E402


class TinyNet(nn.Module):
  """conv 3x3 (3 -> 4 channels, 8 x 8, SAME) -> mean pool -> dense 4 -> 5."""

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(4, (3, 3), padding="SAME")(x).mean(axis=(1, 2))
    return h, nn.Dense(5)(h)


def test_flops_of_a_tiny_conv_and_dense_net_by_hand():
  net = TinyNet()
  x = jnp.ones((2, 8, 8, 3))
  params = net.init(jax.random.key(0), x)["params"]
  frozen_w = jnp.ones((4, 6))

  def loss(params, frozen_w, x):
    h, logits = net.apply({"params": params}, x)
    teacher = jax.lax.stop_gradient(h) @ frozen_w   # no gradient reaches params here
    return jnp.sum(logits) + jnp.sum(teacher)

  count = flops.count_loss(loss, params, frozen_w, x)
  conv = 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)   # 2 x outputs x multiply-adds per output
  dense = 2 * 2 * 4 * 5
  assert count.trainable == conv + dense == 27_728
  assert count.frozen == 2 * 2 * 4 * 6 == 96
  assert count.step == 3 * 27_728 + 96


def test_nested_jaxprs_scan_and_cond_are_counted():
  w = jnp.ones((4, 4))

  def loss(w, x):
    x = jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=3)[0]   # 3 products
    x = jax.lax.cond(x.sum() > 0, lambda a: a @ w @ w, lambda a: a @ w, x)  # costlier: 2
    return jax.jit(lambda a: (a @ w).sum())(x)                          # 1 more
  count = flops.count_loss(loss, w, jnp.ones((2, 4)))
  assert count.trainable == 6 * (2 * 2 * 4 * 4) and count.frozen == 0


@pytest.mark.parametrize("name,published_gmacs", [
    ("resnet50", 4.09),   # torchvision's 4.09 GFLOPS (multiply-adds) at 224 x 224
    ("vit_base", 17.56),  # ViT-B/16 at 224 x 224 (timm / fvcore)
])
def test_forward_flops_of_published_backbones(name, published_gmacs):
  kwargs = dict(num_classes=1000) if name == "resnet50" else dict(num_classes=1000,
                                                                  attention="xla")
  model = models.encoder(name, **kwargs)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                                                train=False))
  rest = {k: v for k, v in variables.items() if k != "params"}
  count = flops.count_loss(
      lambda params, rest, x: model.apply({**rest, "params": params}, x, train=False).sum(),
      variables["params"], rest, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  assert count.trainable / 2e9 == pytest.approx(published_gmacs, rel=2e-3)


def test_peak_flops_table():
  assert flops.peak_flops("NVIDIA H100 80GB HBM3", jnp.bfloat16) == 989.4e12
  assert flops.peak_flops("NVIDIA H100 80GB HBM3", np.float32) == 494.7e12
  assert flops.peak_flops("NVIDIA H100 PCIe", jnp.bfloat16) == 756e12
  assert flops.peak_flops("TPU v5 lite", jnp.bfloat16) == 197e12
  assert flops.peak_flops("TPU v5p", jnp.bfloat16) == 459e12
  assert flops.peak_flops("TPU v6 lite", jnp.bfloat16) == 918e12
  assert flops.peak_flops("cpu", np.float32) is None


def test_step_benchmark_runs_a_tiny_config_and_writes_its_fields(tmp_path):
  out = tmp_path / "step.json"
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--config=configs/mmae_shapes.py",
       "--batch", "16", "--steps", "2", "--warmup", "1", "--out", str(out)],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["config"] == "mmae_shapes" and result["batch"] == 16
  assert result["samples_per_s"] > 0 and result["compile_s"] > 0
  assert 0 < result["step_ms"]["min"] <= result["step_ms"]["median"]
  assert result["flops_per_sample"] > 0
  assert result["mfu"] is None and result["backend"] == "cpu"  # no CPU peak in the table
  for field in ("device_kind", "jax_version", "dtype", "xla_cost_flops_per_sample"):
    assert field in result
  assert np.isfinite(result["final_loss"])


# ------------------------------------------------------------ learning.py --------------
import learning  # noqa: E402


def _row(objective, seed, **acc):
  base = dict(objective=objective, config=learning.command_line(objective, seed), seed=seed,
              steps=2000, wall_s=300.0, pretrained_linear=0.4, pretrained_knn=0.4,
              random_linear=0.2, random_knn=0.2, pixels_linear=0.15, pixels_knn=0.3,
              finetune=None, random_finetune=None)
  return {**base, **acc}


def test_learning_rows_are_the_documented_commands():
  assert learning.command_line("simclr", 2) == (
      "python -m mssl.main --config=configs/simclr_r18_cifar.py:shapes "
      "'--workdir=$WORKDIR/pretrain' --config.seed=2")
  two_view = learning.commands("simclr", 2, "/w")
  assert two_view == {"pretrain": ["--config=configs/simclr_r18_cifar.py:shapes",
                                   "--workdir=/w/pretrain", "--config.seed=2"]}
  masked = learning.commands("umae", 1, "/w", steps=50)
  assert masked["pretrain"][0] == "--config=configs/mmae_shapes.py:umae,steps=50"
  assert learning.commands("mmae", 0, "/w")["pretrain"][0] == "--config=configs/mmae_shapes.py"
  assert "--config.finetune.init=random" in masked["random_finetune"]
  assert "--config.finetune.init=random" not in masked["finetune"]
  for args in masked.values():
    assert "--config.seed=1" in args
  # Every registered objective has a recipe the table runs.
  for objective in learning.objectives():
    config = learning.commands(objective, 0, "/w")["pretrain"][0]
    path = ROOT / config.split("=", 1)[1].split(":")[0]
    assert path.is_file(), (objective, path)


def test_learning_summary_applies_the_bar_to_the_means():
  good = [_row("simclr", s) for s in (0, 1, 2)]
  (s,) = learning.summary(good)
  assert s["learns"] and s["pretrained_linear"] == pytest.approx((0.4, 0.4, 0.4))
  # +9 points on kNN in the mean (one seed far above does not rescue it)
  weak = [_row("byol", 0, pretrained_knn=0.25), _row("byol", 1, pretrained_knn=0.25),
          _row("byol", 2, pretrained_knn=0.37)]
  (s,) = learning.summary(weak)
  assert not s["learns"] and "kNN +9.0 pts (needs > +10)" in s["why"], s["why"]
  assert s["pretrained_knn"] == pytest.approx((0.29, 0.25, 0.37))
  # beats random init by 20 points but not the raw-pixel kNN
  (s,) = learning.summary([_row("vicreg", k, pixels_knn=0.45) for k in (0, 1, 2)])
  assert not s["learns"] and "kNN vs pixels" in s["why"]
  masked = [_row("mmae", k, finetune=0.50, random_finetune=0.46) for k in (0, 1, 2)]
  (s,) = learning.summary(masked)
  assert not s["learns"] and "fine-tune +4.0 pts" in s["why"]
  (s,) = learning.summary([_row("mmae", k, finetune=0.52, random_finetune=0.46)
                           for k in (0, 1, 2)])
  assert s["learns"]
  (s,) = learning.summary(good[:2])
  assert s["meets_bar"] and not s["learns"]  # 2 seeds so far
  assert "| yes (2 of 3 seeds) |" in learning.markdown({"machine": "m", "rows": good[:2]})


def test_learning_resumes_a_partial_table_and_writes_the_markdown(tmp_path, monkeypatch):
  ran = []

  def fake_run_row(objective, seed, root, steps):
    ran.append((objective, seed))
    return _row(objective, seed)
  monkeypatch.setattr(learning, "run_row", fake_run_row)
  monkeypatch.setattr(learning, "machine", lambda: "test machine")
  out = tmp_path / "learning.json"
  args = ["--out", str(out), "--workdirs", str(tmp_path / "w")]
  learning.main(args + ["--objectives", "simclr,byol", "--seeds", "0,1"])
  assert ran == [("simclr", 0), ("simclr", 1), ("byol", 0), ("byol", 1)]
  learning.main(args + ["--objectives", "byol,simclr", "--seeds", "0,1,2"])
  assert ran[4:] == [("byol", 2), ("simclr", 2)]  # the rows already there are kept
  table = json.loads(out.read_text())
  assert set(table) == {"machine", "rows"} and table["machine"] == "test machine"
  first, second = "simclr", "byol"  # the table's order (learning.ORDER)
  assert [(r["objective"], r["seed"]) for r in table["rows"]] == [
      (first, 0), (first, 1), (first, 2), (second, 0), (second, 1), (second, 2)]
  assert all(set(r) == set(learning.COLUMNS) for r in table["rows"])
  text = out.with_suffix(".md").read_text()
  assert "| simclr | 0,1,2 | 2000 | 40.0 [40.0, 40.0] |" in text and "| yes |" in text
  readme = tmp_path / "README.md"
  readme.write_text(f"a\n{learning.README_BEGIN}\nold\n{learning.README_END}\nb\n")
  learning.write_readme(table, readme)
  new = readme.read_text()
  assert new.startswith("a\n") and new.endswith("\nb\n") and "old" not in new
  assert "| byol | 0,1,2 |" in new and "test machine" in new
  with pytest.raises(SystemExit):
    learning.main(args + ["--objectives", "simclrr"])


# ------------------------------------------------------------ language_model.py --------
import language_model as lm_bench  # noqa: E402


def lm_row(arm, seed, exact, ce=0.5, mce=3.9):
  return dict(arm=arm, config=lm_bench.common.command_text(
      lm_bench.command(arm, seed, "$WORKDIR")), seed=seed, steps=1500, wall_s=300.0,
              exact_match=exact, eval_ce=ce, eval_mce=mce)


def test_language_model_rows_are_the_documented_commands_and_differ_in_w_alone():
  assert lm_bench.command("ce", 2, "/w") == [
      "--config=configs/mce_lm_arith.py:ce", "--workdir=/w", "--config.seed=2"]
  assert lm_bench.command("ce+mce", 0, "/w", steps=10)[0] == \
      "--config=configs/mce_lm_arith.py:steps=10"
  assert lm_bench.command("ce", 0, "/w", steps=10)[0] == \
      "--config=configs/mce_lm_arith.py:ce,steps=10"
  from helpers import load_config
  arms = [load_config("mce_lm_arith", spec.split(":", 1)[1] if ":" in spec else None)
          for spec in lm_bench.ARMS.values()]
  assert [c.loss.w for c in arms] == [0.0, 1.0]


def test_language_model_summary_pairs_seeds_and_keeps_the_sign(tmp_path):
  rows = [lm_row("ce", 0, 0.30), lm_row("ce", 1, 0.20), lm_row("ce", 2, 0.25),
          lm_row("ce+mce", 0, 0.25), lm_row("ce+mce", 1, 0.22)]
  s = lm_bench.summary(rows)
  assert s["ce"]["exact_match"] == pytest.approx((0.25, 0.20, 0.30))
  assert s["difference"]["seeds"] == [0, 1]  # seed 2 has one arm only
  assert s["difference"]["exact_match"] == pytest.approx((-0.015, -0.05, 0.02))
  text = lm_bench.markdown({"machine": "m", "rows": rows})
  assert "| CE | 0,1,2 | 1500 | 25.0 [20.0, 30.0] |" in text
  assert "| difference (paired by seed) | 0,1 | | -1.5 [-5.0, +2.0] |" in text
  readme = tmp_path / "README.md"
  readme.write_text(f"a\n{lm_bench.README_BEGIN}\nold\n{lm_bench.README_END}\nb\n")
  lm_bench.write_readme({"machine": "m", "rows": rows}, readme)
  out = readme.read_text()
  assert out.startswith("a\n") and out.endswith("b\n") and "old" not in out
  assert "| CE + MCE (w = 1) | 0,1 |" in out


# ------------------------------------------------------------ compile_time.py ----------
def test_compile_time_builds_up_to_the_suites_flags():
  """benchmarks/compile_time.py measures the steps to tests/conftest.py's SPEED_FLAGS,
  one flag added at a time, ending at exactly those flags."""
  import compile_time  # noqa: E402
  from conftest import SPEED_FLAGS
  sets = list(compile_time.flag_sets().values())
  assert sets[0] == "" and sets[-1].split() == list(SPEED_FLAGS)
  assert [len(s.split()) for s in sets] == list(range(len(SPEED_FLAGS) + 1))


# ------------------------------------------------------------ image_folder.py ----------
import image_folder as folder_bench  # noqa: E402


def test_image_folder_rows_are_the_quickstart_with_only_data_size_and_steps_changed(
    tmp_path, monkeypatch):
  from mssl import main as cli
  args = folder_bench.commands("recipe", 1, "/data/digits", 28, 1000, "/w")
  assert args == ["--config=configs/quickstart.py", "--workdir=/w",
                  "--config.data.dataset=image_folder:/data/digits",
                  "--config.data.image_size=28", "--config.total_steps=1000",
                  "--config.seed=1", "--config.eval.embedding_plot=none"]
  wide = folder_bench.commands("width16", 0, "/d", 28, 1000, "/w")
  assert wide[0] == "--config=configs/quickstart.py" and wide[-1] == "--config.model.width=16"
  assert folder_bench.commands("grey", 0, "/d", 28, 1000, "/w")[0] == \
      "--config=configs/quickstart.py:grey"
  for variant in folder_bench.VARIANTS:  # each parses to a config (nothing runs)
    command = cli.parse_command_line(
        ["mssl.main", *folder_bench.commands(variant, 0, str(tmp_path), 28, 10, "/w")])
    config = cli.config_of(command)
    assert config.data.dataset == f"image_folder:{tmp_path}" and config.total_steps == 10
  ran = []

  def fake_row(variant, seed, folder, size, steps, dataset, root):
    ran.append((variant, seed, folder))
    return dict(variant=variant, dataset=dataset, config=folder_bench.common.command_text(
        folder_bench.commands(variant, seed, folder, size, steps, "$WORKDIR")), seed=seed,
        steps=steps, wall_s=1.0, pretrained_linear=0.97 - 0.01 * seed, pretrained_knn=0.95,
        random_linear=0.8, random_knn=0.86, pixels_linear=0.967, pixels_knn=0.958)
  monkeypatch.setattr(folder_bench, "run_row", fake_row)
  out = tmp_path / "table.json"
  common_args = ["--out", str(out), "--workdirs", str(tmp_path / "w"), "--folder",
                 str(tmp_path)]
  folder_bench.main(common_args + ["--variants", "recipe", "--seeds", "0,1"])
  folder_bench.main(common_args + ["--variants", "recipe,grey", "--seeds", "0"])
  assert ran == [("recipe", 0, str(tmp_path)), ("recipe", 1, str(tmp_path)),
                 ("grey", 0, str(tmp_path))]  # the second call resumes
  text = out.with_suffix(".md").read_text()
  assert "| `recipe` | 2 | 96.50% [96.00, 97.00] | 95.00% [95.00, 95.00] |" in text
  assert "| 1 of 2 seeds |" in text and "| `grey` | 1 | 97.00% |" in text
  with pytest.raises(SystemExit):
    folder_bench.main(common_args + ["--variants", "colour"])


def test_a_table_names_every_machine_its_rows_ran_on():
  import common as bench_common
  assert bench_common.joined_machines("", "A") == "A"
  assert bench_common.joined_machines("A", "A") == "A"
  assert bench_common.joined_machines("A", "B") == "A + B"
  assert bench_common.joined_machines("A + B", "A") == "A + B"
