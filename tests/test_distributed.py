"""Data-parallel training (`pythia_suite.distributed`, `pythia-suite train --nproc-per-node`) on
2 CPU processes over gloo, rendezvous on 127.0.0.1.

    .venv/bin/python -m pytest tests/test_distributed.py -q

2-rank DDP with one micro-batch per rank computes exactly what one process computes with
--micro-batch B/2: the checkpoints' bytes and every logged loss, gradient norm and fingerprint
are identical, and a run resumes from any checkpoint with any number of ranks. Bit identity needs
the same number of torch threads in every process (matrix products on another thread count add
in another order): `train_cli` runs each process, every rank included, with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from _train_helpers import BATCH, build_data, one_error_line, run_cli, weight_hashes
from conftest import scaled_error

STEPS, EVERY = 4, 4  # checkpoints 0, 1, 2, 4
COLUMNS = ["step", "tokens_seen", "loss", "lr", "grad_norm", "fingerprint"]

# Engines that reduce in another order (FSDP2's reduce-scatter, ZeRO's buckets) are compared with
# one process within these bounds; DDP and resume are compared bit for bit.
LR = 1e-3  # micro-50k's peak learning rate (the size table's)
# Adam moves a weight by at most about lr per step whatever its gradient's size, so a wrong
# gradient (a lost micro-batch, another rank's rows) moves weights by about lr. Float32 sums in
# another order change only the updates of weights whose gradient is near Adam's eps: one process
# against itself with micro-batches of 2, 4 or 8, or with 2 threads, differs by up to 2.5e-5
# (lr / 40) after 4 steps. lr / 5 separates the two.
WEIGHT_BOUND = LR / 5
# The logged loss and gradient norm are float32 means and norms of the same terms in another order:
# measured 1.9e-7 relative; 1e-5 is ~84 float32 eps.
LOG_RTOL = 1e-5


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    return build_data(tmp_path_factory.mktemp("ddp_data"))


@pytest.fixture(scope="module")
def single(prefix, tmp_path_factory) -> Path:
    """The reference: one process, micro-batches of B/2."""
    out = tmp_path_factory.mktemp("single") / "suite"
    assert train_cli(prefix, out, "--micro-batch", str(BATCH // 2)).returncode == 0
    return out


def train_cli(prefix: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`pythia-suite train` in a process of one thread, as every rank runs (CPU matrix products
    with another thread count add in another order)."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pythia_suite", "train", "--data", str(prefix), "--out", str(out),
                           "--sizes", "micro-50k", "--steps", str(STEPS), "--batch-size", str(BATCH),
                           "--checkpoint-every", str(EVERY), "--quiet", *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def train_ddp(prefix: Path, out: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    return train_cli(prefix, out, "--nproc-per-node", str(nproc))


def log(suite: Path) -> pd.DataFrame:
    return pd.read_parquet(suite / "micro-50k" / "train_log.parquet")[COLUMNS]


def test_two_rank_ddp_is_bit_identical_to_micro_batch_accumulation(prefix, single, tmp_path):
    out = tmp_path / "ddp"
    proc = train_ddp(prefix, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote") == 1  # rank 0 speaks for the job
    assert sorted(weight_hashes(out, "micro-50k")) == [0, 1, 2, 4]
    assert weight_hashes(out, "micro-50k") == weight_hashes(single, "micro-50k")
    pd.testing.assert_frame_equal(log(out), log(single))
    a, b = (json.loads((d / "checkpoints_manifest.json").read_text()) for d in (out, single))
    assert a["models"][0]["checkpoints"] == b["models"][0]["checkpoints"]  # same steps, same sha256
    assert a["data"] == b["data"]


@pytest.mark.parametrize("first, then", [(1, 2), (2, 1)])
def test_resume_from_any_checkpoint_with_any_world_size(prefix, single, tmp_path, first, then):
    """A run stopped after checkpoint step2 (later folders gone), resumed with another world size."""
    out = tmp_path / "r"
    if first == 1:
        shutil.copytree(single, out)
    else:
        assert train_ddp(prefix, out).returncode == 0
    shutil.rmtree(out / "micro-50k" / "step4")
    if then == 2:
        proc = train_ddp(prefix, out)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert train_cli(prefix, out, "--micro-batch", str(BATCH // 2)).returncode == 0
    assert weight_hashes(out, "micro-50k") == weight_hashes(single, "micro-50k")
    pd.testing.assert_frame_equal(log(out), log(single))


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "7"], "--batch-size 7 does not split evenly over 2 ranks"),
    (["--batch-size", "6", "--micro-batch", "2"], "--batch-size 6 is not divisible by 2 ranks x --micro-batch 2"),
    (["--nproc-per-node", "0"], "--nproc-per-node 0: give at least 1 process"),
])
def test_cli_bad_distributed_input(prefix, tmp_path, capsys, extra, message):
    base = ["train", "--data", prefix, "--out", tmp_path / "out", "--sizes", "micro-50k", "--steps", "2", "--quiet"]
    if "--nproc-per-node" not in extra:
        extra = ["--nproc-per-node", "2", *extra]
    rc, _, err = run_cli(capsys, *base, *extra)
    assert rc == 2 and message in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_fsdp2_matches_within_float_rounding_and_resumes(prefix, single, tmp_path):
    """FSDP2 (`--parallel fsdp`): the same HF-format checkpoints, gathered whole, within float
    rounding of the single process (WEIGHT_BOUND); a run resumed from a single-process checkpoint
    under FSDP2 too."""
    import torch

    from pythia_suite.model import GPTNeoX

    out = tmp_path / "fsdp"
    proc = train_cli(prefix, out, "--nproc-per-node", "2", "--parallel", "fsdp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(weight_hashes(out, "micro-50k")) == [0, 1, 2, 4]
    for step in (0, 2, 4):
        assert _max_weight_difference(out, single, step) < WEIGHT_BOUND
    _assert_logs_close(log(out), log(single))

    resumed = tmp_path / "resumed"
    shutil.copytree(single, resumed)
    shutil.rmtree(resumed / "micro-50k" / "step4")
    proc = train_cli(prefix, resumed, "--nproc-per-node", "2", "--parallel", "fsdp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _max_weight_difference(resumed, single, 4) < WEIGHT_BOUND
    a = GPTNeoX.from_pretrained(resumed / "micro-50k" / "step4").state_dict()
    assert torch.equal(a["embed_out.weight"].isfinite(), torch.ones_like(a["embed_out.weight"], dtype=torch.bool))


def _max_weight_difference(a: Path, b: Path, step: int) -> float:
    from pythia_suite.model import GPTNeoX

    x = GPTNeoX.from_pretrained(a / "micro-50k" / f"step{step}").state_dict()
    y = GPTNeoX.from_pretrained(b / "micro-50k" / f"step{step}").state_dict()
    return max(float((x[k] - y[k]).abs().max()) for k in y)


def _assert_logs_close(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert (got["fingerprint"] == ref["fingerprint"]).all()  # the same batches, exactly
    for column in ("loss", "grad_norm"):
        assert ((got[column] - ref[column]).abs() <= LOG_RTOL * ref[column].abs()).all(), column


def _optimizer_state(suite: Path, step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(suite / "micro-50k" / f"step{step}" / "trainer_state.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("stage, micro", [(1, BATCH // 2), (2, BATCH // 2), (2, BATCH // 4)])
def test_deepspeed_zero_matches_within_float_rounding_and_resumes(prefix, single, tmp_path, stage, micro):
    """DeepSpeed ZeRO stage 1/2 (`--parallel deepspeed`, small buckets so the gradients travel in
    several; stage 2 with two micro-batches per rank, so DeepSpeed's own accumulation runs):
    checkpoints in the single-process format, weights and gathered optimizer state within float
    rounding of the single process (WEIGHT_BOUND; the moments relative to their own scale), and resumable both ways (from a single-process checkpoint under ZeRO, and
    from a ZeRO checkpoint in one process). Slow: DeepSpeed compiles its CPU communication
    extension on first use."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (the extra pythia-suite[deepspeed])")
    zero = ["--nproc-per-node", "2", "--parallel", "deepspeed", "--zero-stage", str(stage), "--zero-bucket", "2000",
            "--micro-batch", str(micro)]
    if micro != BATCH // 2:
        # the reference accumulates the same micro-batches (ZeRO adds them up in another order)
        single = tmp_path / "single"
        assert train_cli(prefix, single, "--micro-batch", str(micro)).returncode == 0
    out = tmp_path / "zero"
    proc = train_cli(prefix, out, *zero)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote") == 1
    assert sorted(weight_hashes(out, "micro-50k")) == [0, 1, 2, 4]
    for step in (0, 1, 2, 4):
        assert _max_weight_difference(out, single, step) < WEIGHT_BOUND
    got, ref = _optimizer_state(out, 4), _optimizer_state(single, 4)
    assert got.keys() == ref.keys()  # every parameter's exp_avg, exp_avg_sq and step, keyed as one process keys them
    # The moments are running means of the (squared) gradients: a reordered float32 sum moves them by
    # a few eps of their own scale; a wrong gradient changes them at their scale. 1e-3 of each
    # tensor's largest value separates the two (exp_avg_sq is ~1e-8, so no absolute bound could).
    for k in ref:
        if k != "rng_cpu":
            assert scaled_error(got[k], ref[k]) < 1e-3, k
    _assert_logs_close(log(out), log(single))

    for first, then in ((single, zero), (out, ["--micro-batch", str(micro)])):
        resumed = tmp_path / f"resumed-{first.name}"
        shutil.copytree(first, resumed)
        shutil.rmtree(resumed / "micro-50k" / "step4")
        proc = train_cli(prefix, resumed, *then)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _max_weight_difference(resumed, single, 4) < WEIGHT_BOUND


def test_cli_deepspeed_bad_input(prefix, tmp_path, capsys):
    base = ["train", "--data", prefix, "--out", tmp_path / "out", "--sizes", "micro-50k", "--steps", "2", "--quiet",
            "--nproc-per-node", "2", "--parallel", "deepspeed"]
    rc, _, err = run_cli(capsys, *base, "--zero-stage", "3")
    assert rc == 2 and "--zero-stage 3: choose 1 or 2" in one_error_line(err)
    rc, _, err = run_cli(capsys, *base, "--zero-bucket", "0")
    assert rc == 2 and "--zero-bucket 0: give a positive number" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_cli_deepspeed_not_installed(prefix, tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "out", "--sizes", "micro-50k",
                         "--steps", "2", "--quiet", "--nproc-per-node", "2", "--parallel", "deepspeed")
    assert rc == 2 and "--parallel deepspeed needs DeepSpeed: pip install --no-build-isolation" in one_error_line(err)
    assert not (tmp_path / "out").exists()
