"""The trainer (`pythia_suite.train`, `pythia-suite train`): schedule, determinism, resume, shared
training order, seeds, divergence and bad input.

    .venv/bin/python -m pytest tests/test_train.py -q

One tiny learnable corpus (16-token items, BPE of 300) and one reference suite (micro-50k and
micro-200k, 24 steps of batch 8, checkpoints 0,1,2,4,8,...,24) are built once per module; tests
that train more write to their own tmp_path.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import pythia_suite.train.loop as train_mod
import pythia_suite.train.state as train_state
from _train_helpers import (
    BATCH,
    EVERY,
    SEQ_LEN,
    SIZES,
    build_data,
    files_under,
    one_error_line,
    run_cli,
    run_train,
    weight_hashes,
)
from pythia_suite.checkpoints import PYTHIA_STEPS, Suite, checkpoint_steps, validate_manifest
from pythia_suite.data import TrainingOrder
from pythia_suite.data.indexed import write_fixed_index
from pythia_suite.errors import UserError
from pythia_suite.train import TrainingDiverged, lr_at, read_train_log

STEPS = 24
SCHEDULE = [0, 1, 2, 4, 8, 12, 16, 20, 24]
LOG_COLUMNS = ["step", "tokens_seen", "loss", "lr", "grad_norm", "fingerprint"]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    return build_data(tmp_path_factory.mktemp("train_data"))


@pytest.fixture(scope="module")
def suite_a(tmp_path_factory, prefix) -> Path:
    """The reference suite (read-only for tests): both sizes, STEPS steps, default seeds."""
    out = tmp_path_factory.mktemp("suite") / "a"
    run_train(prefix, out, sizes=SIZES, steps=STEPS)
    return out


def log_of(suite_dir: Path, model: str) -> pd.DataFrame:
    return pd.read_parquet(Path(suite_dir) / model / "train_log.parquet")


def stop_at(step: int):
    """A stand-in for lr_at that raises KeyboardInterrupt (a kill) when training reaches `step`."""

    def fake(s, *args):
        if s == step:
            raise KeyboardInterrupt
        return lr_at(s, *args)

    return fake


# ---- schedules ---------------------------------------------------------------------------------


def test_pythia_checkpoint_schedule():
    steps = checkpoint_steps(143000, 1000)
    assert steps == PYTHIA_STEPS
    assert len(steps) == 154 and steps[0] == 0 and steps[-1] == 143000
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:] == list(range(1000, 143001, 1000))


def test_small_checkpoint_schedule():
    assert checkpoint_steps(20, 8) == [0, 1, 2, 4, 8, 16, 20]
    assert checkpoint_steps(STEPS, EVERY) == SCHEDULE
    assert checkpoint_steps(3, 1000) == [0, 1, 2, 3]
    with pytest.raises(UserError, match="bad checkpoint schedule"):
        checkpoint_steps(10, 0)


def test_lr_warmup_then_cosine_to_a_tenth():
    total, peak = 1000, 6e-4
    lrs = [lr_at(s, total, peak, 0.01, 0.1) for s in range(total)]
    warmup = 10  # 1% of 1000
    assert lrs[:warmup] == pytest.approx([peak * (s + 1) / warmup for s in range(warmup)])
    assert lrs[warmup - 1] == lrs[warmup] == peak
    after = lrs[warmup:]
    assert all(a >= b for a, b in zip(after, after[1:]))  # monotone after warmup
    assert lrs[-1] == 0.1 * peak  # exactly, at the last step
    mid = warmup + (total - 1 - warmup) // 2
    assert lrs[mid] == pytest.approx(peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))), rel=1e-2)
    assert min(lrs) == 0.1 * peak and max(lrs) == peak

    short = [lr_at(s, 20, 1e-3, 0.01, 0.1) for s in range(20)]
    assert short[0] == 1e-3 and short[-1] == 0.1 * 1e-3  # warmup of one step


# ---- the reference run ---------------------------------------------------------------------------


def test_suite_layout_log_and_manifest(suite_a, prefix):
    manifest = json.loads((suite_a / "checkpoints_manifest.json").read_text())
    validate_manifest(manifest)
    assert [m["name"] for m in manifest["models"]] == SIZES
    assert manifest["suite"] == "a"
    assert manifest["data"]["batch_size"] == BATCH and manifest["data"]["seq_len"] == SEQ_LEN
    assert (suite_a / manifest["data"]["prefix"]).resolve() == Path(prefix).resolve()
    for model in SIZES:
        steps = sorted(int(p.name[4:]) for p in (suite_a / model).glob("step*"))
        assert steps == SCHEDULE  # no leftover temporaries (step*.tmp) either
        for step in SCHEDULE:
            names = sorted(p.name for p in (suite_a / model / f"step{step}").iterdir())
            assert names == ["config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                             "tokenizer_config.json", "trainer_state.json", "trainer_state.safetensors"]
        entry = next(m for m in manifest["models"] if m["name"] == model)
        assert [c["step"] for c in entry["checkpoints"]] == SCHEDULE
        assert all(c["tokens_seen"] == c["step"] * BATCH * SEQ_LEN for c in entry["checkpoints"])
        assert entry["peak_lr"] == 1e-3

        log = log_of(suite_a, model)
        assert list(log.columns) == ["suite", "model", "params", *LOG_COLUMNS]
        assert log["step"].tolist() == list(range(STEPS))
        assert (log["tokens_seen"] == log["step"] * BATCH * SEQ_LEN).all()
        assert (log["model"] == model).all() and (log["suite"] == "a").all()
        assert (log["params"] == entry["params"]).all()
        assert log["lr"].tolist() == [lr_at(s, STEPS, 1e-3, 0.01, 0.1) for s in range(STEPS)]
        assert log["lr"].iloc[-1] == 0.1 * 1e-3
        assert np.isfinite(log["loss"]).all() and np.isfinite(log["grad_norm"]).all()
    assert len(read_train_log(suite_a)) == 2 * STEPS


def test_loss_falls(suite_a):
    for model in SIZES:
        loss = log_of(suite_a, model)["loss"].to_numpy()
        assert loss[0] == pytest.approx(math.log(384), rel=0.1)  # ~uniform over the padded vocabulary
        assert loss[-4:].mean() < loss[:4].mean() - 1.0, loss


def test_same_training_order_for_every_size(suite_a, prefix):
    order = TrainingOrder(prefix, BATCH)
    expected = [order.fingerprint(s) for s in range(STEPS)]
    for model in SIZES:
        assert log_of(suite_a, model)["fingerprint"].tolist() == expected


def test_rerunning_a_finished_suite_changes_nothing(suite_a, prefix):
    before = files_under(suite_a)
    run_train(prefix, suite_a, sizes=SIZES, steps=STEPS)
    assert files_under(suite_a) == before


# ---- determinism and resume -----------------------------------------------------------------------


def test_same_seed_gives_bit_identical_checkpoints_and_logs(suite_a, prefix, tmp_path):
    run_train(prefix, tmp_path / "b", steps=STEPS)  # micro-50k alone, in another folder
    a, b = weight_hashes(suite_a, "micro-50k"), weight_hashes(tmp_path / "b", "micro-50k")
    assert sorted(b) == SCHEDULE and a == b
    pd.testing.assert_frame_equal(log_of(suite_a, "micro-50k")[LOG_COLUMNS], log_of(tmp_path / "b", "micro-50k")[LOG_COLUMNS])


def test_kill_and_resume_is_bit_identical(suite_a, prefix, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c"
    monkeypatch.setattr(train_mod, "lr_at", stop_at(10))  # killed during step 10, after checkpoint step8
    with pytest.raises(KeyboardInterrupt):
        run_train(prefix, out, steps=STEPS)
    assert sorted(weight_hashes(out, "micro-50k")) == [0, 1, 2, 4, 8]
    assert log_of(out, "micro-50k")["step"].tolist() == list(range(8))
    monkeypatch.undo()

    capsys.readouterr()
    run_train(prefix, out, steps=STEPS)  # resumes from step8
    assert capsys.readouterr().err == f"resuming micro-50k from step 8 (of {STEPS})\n"  # progress=False: only this
    assert weight_hashes(out, "micro-50k") == weight_hashes(suite_a, "micro-50k")
    pd.testing.assert_frame_equal(log_of(suite_a, "micro-50k")[LOG_COLUMNS], log_of(out, "micro-50k")[LOG_COLUMNS])
    ours = json.loads((out / "checkpoints_manifest.json").read_text())["models"][0]
    ref = json.loads((suite_a / "checkpoints_manifest.json").read_text())["models"][0]
    assert ours["checkpoints"] == ref["checkpoints"]


@pytest.mark.parametrize("victim", ["write_log", "save_checkpoint"])
def test_kill_while_writing_a_checkpoint_loses_no_log_rows(suite_a, prefix, tmp_path, monkeypatch, victim):
    module = train_mod if victim == "write_log" else train_state  # where the loop looks the name up
    real = getattr(module, victim)

    def killed(*args):
        if victim == "write_log" and len(args[0]) == 12 or victim == "save_checkpoint" and args[3] == 12:
            raise KeyboardInterrupt
        return real(*args)

    out = tmp_path / "k"
    monkeypatch.setattr(module, victim, killed)
    with pytest.raises(KeyboardInterrupt):
        run_train(prefix, out, steps=STEPS)
    monkeypatch.undo()
    run_train(prefix, out, steps=STEPS)
    assert weight_hashes(out, "micro-50k") == weight_hashes(suite_a, "micro-50k")
    pd.testing.assert_frame_equal(log_of(suite_a, "micro-50k")[LOG_COLUMNS], log_of(out, "micro-50k")[LOG_COLUMNS])


def test_resume_after_lost_checkpoints_and_a_half_written_one(suite_a, prefix, tmp_path):
    """A kill during the save of step16: later folders gone, a stray step16.tmp, and a log that
    already holds rows past the newest checkpoint."""
    out = tmp_path / "d"
    shutil.copytree(suite_a / "micro-50k", out / "micro-50k")
    for step in (16, 20, 24):
        shutil.rmtree(out / "micro-50k" / f"step{step}")
    (out / "micro-50k" / "step16.tmp").mkdir()
    (out / "micro-50k" / "step16.tmp" / "model.safetensors").write_bytes(b"half")
    (out / "micro-50k" / "step20").mkdir()  # a folder without trainer state is not a resume point
    (out / "micro-50k" / "step20" / "config.json").write_text("{}")

    run_train(prefix, out, steps=STEPS)
    assert weight_hashes(out, "micro-50k") == weight_hashes(suite_a, "micro-50k")
    assert not (out / "micro-50k" / "step16.tmp").exists()
    pd.testing.assert_frame_equal(log_of(suite_a, "micro-50k")[LOG_COLUMNS], log_of(out, "micro-50k")[LOG_COLUMNS])


def test_separate_init_and_data_seeds(suite_a, prefix, tmp_path):
    ref_weights = weight_hashes(suite_a, "micro-50k")
    ref_prints = log_of(suite_a, "micro-50k")["fingerprint"].tolist()

    run_train(prefix, tmp_path / "seed", steps=2, seed=99)
    assert weight_hashes(tmp_path / "seed", "micro-50k")[0] != ref_weights[0]
    assert log_of(tmp_path / "seed", "micro-50k")["fingerprint"].tolist() == ref_prints[:2]

    run_train(prefix, tmp_path / "data_seed", steps=2, data_seed=5)
    assert weight_hashes(tmp_path / "data_seed", "micro-50k")[0] == ref_weights[0]
    prints = log_of(tmp_path / "data_seed", "micro-50k")["fingerprint"].tolist()
    assert prints != ref_prints[:2]
    assert prints == [TrainingOrder(prefix, BATCH, seed=5).fingerprint(s) for s in range(2)]
    manifest = json.loads((tmp_path / "data_seed" / "checkpoints_manifest.json").read_text())
    assert manifest["data"]["data_seed"] == 5 and manifest["models"][0]["seeds"] == {"init": 1234, "data": 5}


def test_micro_batches_accumulate_to_the_full_batch(suite_a, prefix, tmp_path):
    run_train(prefix, tmp_path / "micro", steps=STEPS, micro_batch=2)
    ref, got = log_of(suite_a, "micro-50k"), log_of(tmp_path / "micro", "micro-50k")
    # the same gradients accumulated in another grouping: float32 sums reordered, so the logged loss
    # and gradient norm move by a few eps relative (measured 1.9e-7); rtol 1e-5 is ~84 eps
    np.testing.assert_allclose(got["loss"][:4], ref["loss"][:4], rtol=1e-5)
    np.testing.assert_allclose(got["grad_norm"][:4], ref["grad_norm"][:4], rtol=1e-5)


# ---- divergence -------------------------------------------------------------------------------------


def assert_finite_checkpoint(folder: Path) -> None:
    assert all(torch.isfinite(t).all() for t in load_file(folder / "model.safetensors").values())


def test_huge_lr_stops_at_the_last_good_checkpoint(prefix, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged) as e:
        run_train(prefix, out, steps=STEPS, lr=1e6)
    assert isinstance(e.value, UserError)
    msg = str(e.value)
    last = max(weight_hashes(out, "micro-50k"))
    good = out / "micro-50k" / f"step{last}"
    assert f"last good checkpoint is {good}" in msg and "--lr" in msg
    assert_finite_checkpoint(good)
    assert Suite.load(out).steps("micro-50k")[-1] == last  # the manifest stops there too


def test_nan_loss_names_the_checkpoint_before_it(prefix, tmp_path, monkeypatch):
    calls = []

    def cross_entropy(*args, **kwargs):
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(*args, **kwargs)
        return loss * float("nan") if len(calls) == 6 else loss  # step 5

    monkeypatch.setattr(train_mod, "F", SimpleNamespace(cross_entropy=cross_entropy))
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"at step 5; the last good checkpoint is .*step4 "):
        run_train(prefix, out, steps=STEPS)
    assert sorted(weight_hashes(out, "micro-50k")) == [0, 1, 2, 4]
    assert_finite_checkpoint(out / "micro-50k" / "step4")
    assert log_of(out, "micro-50k")["step"].tolist() == [0, 1, 2, 3]


def test_cli_divergence_is_one_error_line(prefix, tmp_path, capsys):
    out = tmp_path / "nan"
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", out, "--sizes", "micro-50k", "--steps", 8,
                         "--batch-size", BATCH, "--checkpoint-every", EVERY, "--lr", "1e6", "--quiet")
    assert rc == 2
    line = one_error_line(err)
    assert "last good checkpoint" in line and str(out / "micro-50k" / "step") in line


# ---- the command line -----------------------------------------------------------------------------


def test_cli_train(prefix, tmp_path, capsys):
    out = tmp_path / "cli"
    rc, stdout, err = run_cli(capsys, "train", "--data", prefix, "--out", out, "--sizes", "micro-50k", "--steps", 3,
                              "--batch-size", 4, "--checkpoint-every", 2, "--suite", "mine", "--quiet")
    assert rc == 0, err
    first, last = stdout.strip().splitlines()  # a line per model, then the manifest
    assert first.startswith("micro-50k: 3 steps, final loss ") and last == f"wrote {out / 'checkpoints_manifest.json'}"
    suite = Suite.load(out)
    assert suite.name == "mine" and suite.steps("micro-50k") == [0, 1, 2, 3]


def test_cli_resume_of_a_finished_run_says_so_and_ends_with_its_summary(prefix, tmp_path, capsys):
    argv = ["train", "--data", prefix, "--out", tmp_path / "s", "--sizes", "micro-50k", "--steps", 3,
            "--batch-size", 4, "--checkpoint-every", 2, "--quiet"]
    assert run_cli(capsys, *argv)[0] == 0
    rc, stdout, err = run_cli(capsys, *argv)
    assert rc == 0 and err == "micro-50k is trained to its last step 3: nothing to resume\n"
    first, last = stdout.strip().splitlines()
    assert first.endswith("already trained (nothing to do)") and last == f"wrote {tmp_path / 's' / 'checkpoints_manifest.json'}"


@pytest.mark.parametrize(
    "args, message",
    [
        ({"--sizes": ["micro-9z"]}, r"unknown model size 'micro-9z' \(did you mean .*\?\); known: .*micro-50k"),
        ({"--sizes": ["micro-50k", "micro-200k", "micro-50k"]}, "--sizes names a size twice"),
        ({"--vocab-size": ["10"]}, "vocabulary of 10 is smaller than the data's token id"),
        ({"--steps": ["100000"]}, r"--steps 100000 out of range: the data has \d+ steps of batch 8"),
        ({"--steps": ["0"]}, "--steps 0 out of range"),
        ({"--micro-batch": ["3"]}, "--micro-batch 3 must divide --batch-size 8"),
        ({"--batch-size": ["100000"]}, "fewer than one batch of 100000"),
        ({"--checkpoint-every": ["0"]}, "bad checkpoint schedule"),
    ],
)
def test_cli_bad_train_input(prefix, tmp_path, capsys, args, message):
    base = {"--sizes": ["micro-50k"], "--steps": ["4"], "--batch-size": [str(BATCH)]} | args
    argv = [x for flag, values in base.items() for x in [flag, *values]]
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "out", *argv, "--quiet")
    assert rc == 2
    assert re.search(message, one_error_line(err)), err
    assert not (tmp_path / "out").exists()  # nothing written


def test_cli_missing_data(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "--data", tmp_path / "nope", "--out", tmp_path / "out", "--quiet")
    assert rc == 2
    one_error_line(err)


def test_cli_resume_with_other_settings_is_refused(prefix, tmp_path, capsys):
    out = tmp_path / "r"
    run_train(prefix, out, steps=4)
    before = files_under(out)
    for extra in (["--seed", "7"], ["--steps", "6"], ["--lr", "3e-4"]):
        argv = {"--sizes": "micro-50k", "--steps": "4", "--batch-size": str(BATCH),
                "--checkpoint-every": str(EVERY)} | dict([extra])
        rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", out,
                             *[x for kv in argv.items() for x in kv], "--quiet")
        assert rc == 2
        assert "holds a run with other settings" in one_error_line(err)
        assert files_under(out) == before


def test_token_past_the_vocabulary_later_in_the_data(tmp_path, capsys):
    """Batch 0 fits the vocabulary but a later batch does not: an error, not an IndexError."""
    item, n = 9, 40
    tokens = np.tile(np.arange(item, dtype=np.uint16) % 50, (n, 1))
    tokens[25, 3] = 200  # item 25 is in step 6 (batch 4)
    prefix = tmp_path / "odd"
    tokens.tofile(f"{prefix}.bin")
    write_fixed_index(f"{prefix}.idx", np.uint16, n, item)
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", out, "--sizes", "micro-50k",
                         "--batch-size", 4, "--vocab-size", 100, "--checkpoint-every", 2, "--quiet")
    assert rc == 2
    line = one_error_line(err)
    assert "token id 200 at step 6" in line and "--vocab-size" in line
    assert Suite.load(out).steps("micro-50k") == [0, 1, 2, 4, 6]  # checkpoints before it stay usable

    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "out2", "--batch-size", 4, "--quiet")
    assert rc == 2 and "no sidecar" in one_error_line(err)  # and no vocabulary given


# ---- integrity: one training order per suite, nothing damaged is resumed from -----------------------


@pytest.mark.parametrize("flag, value, what", [("--batch-size", "4", "batch size 8, not 4"),
                                               ("--data-seed", "3", "data seed None, not 3")])
def test_cli_another_order_into_an_existing_suite_is_refused(prefix, tmp_path, capsys, flag, value, what):
    out = tmp_path / "s"
    run_train(prefix, out, steps=4)
    before = files_under(out)
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", out, "--sizes", "micro-200k", "--steps", "4",
                         "--batch-size", str(BATCH), "--checkpoint-every", str(EVERY), flag, value, "--quiet")
    assert rc == 2
    line = one_error_line(err)
    assert f"holds a suite trained with {what}" in line and "one training order" in line
    assert files_under(out) == before  # the manifest keeps its batch size


def test_resume_from_damaged_weights_is_refused_and_verify_still_sees_it(prefix, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c"
    monkeypatch.setattr(train_mod, "lr_at", stop_at(10))
    with pytest.raises(KeyboardInterrupt):
        run_train(prefix, out, steps=STEPS)
    monkeypatch.undo()
    weights = out / "micro-50k" / "step8" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    before = files_under(out)
    with pytest.raises(UserError, match="cannot resume from .*step8: model.safetensors has sha256 .* the file is damaged"):
        run_train(prefix, out, steps=STEPS)
    assert files_under(out) == before
    rc, _, err = run_cli(capsys, "checkpoints", "verify", out)
    assert rc == 2 and "micro-50k step 8: sha256" in err

    state = out / "micro-50k" / "step8" / "trainer_state.safetensors"
    weights.write_bytes(bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:]))  # repaired
    raw = state.read_bytes()
    state.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    with pytest.raises(UserError, match="trainer_state.safetensors has sha256"):
        run_train(prefix, out, steps=STEPS)


def test_checkpoint_files_honour_the_umask(prefix, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        run_train(prefix, tmp_path / "u", steps=2)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "u").rglob("*") if p.is_file()]
    assert files and {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}


def test_cli_unavailable_device_is_one_line_and_writes_nothing(prefix, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is available here")
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "out", "--sizes", "micro-50k",
                         "--steps", "2", "--batch-size", str(BATCH), "--device", "cuda", "--quiet")
    assert rc == 2
    line = one_error_line(err)
    assert "--device cuda" in line and torch.__version__ in line
    assert not (tmp_path / "out").exists()
