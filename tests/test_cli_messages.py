"""A CLI that explains itself (issue 9.4) and train's held-out loss and last line per model (9.2, 9.5)."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from _train_helpers import BATCH, build_data, run_train
from conftest import assert_one_error_line, run_cli


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    return build_data(tmp_path_factory.mktemp("cli_msgs"))


def test_bare_command_prints_help(capsys):
    rc, out, err = run_cli(capsys)
    assert rc == 0 and err == ""
    assert out.startswith("usage: pythia-suite") and "data" in out and "train" in out and "demo" in out


@pytest.mark.parametrize("group", ["data", "checkpoints"])
def test_group_without_subcommand_prints_its_help(group, capsys):
    rc, out, err = run_cli(capsys, group)
    assert rc == 0 and err == ""
    assert out.startswith(f"usage: pythia-suite {group}") and "COMMAND" in out
    assert "_cmd" not in out


def _parsers():
    """Every parser of the CLI, analyses included."""
    from pythia_suite.cli import build_parser
    from pythia_suite.registry import available, resolve

    todo, seen = [build_parser()], []
    while todo:
        p = todo.pop()
        seen.append(p)
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo += [sp for sp in a.choices.values() if sp.add_help]
    for analysis in available():
        seen.append(resolve(analysis.main.replace(":main", ":build_parser"))())
    return seen


def test_every_option_has_help_text():
    missing = [f"{p.prog} {a.option_strings or a.dest}" for p in _parsers() for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert missing == []


def test_internal_names_never_leak(capsys):
    for argv in (["data"], ["checkpoints"], ["data", "batch"], ["data", "nope"]):
        rc, out, err = run_cli(capsys, *argv)
        assert "data_cmd" not in out + err and "ck_cmd" not in out + err and "cmd" not in (out + err).split()


def test_unknown_size_suggests_near_matches(prefix, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "s", "--sizes", "micro-1M")
    assert rc == 2
    assert "unknown model size 'micro-1M' (did you mean micro-1m?)" in assert_one_error_line(err)
    assert not (tmp_path / "s").exists()


def test_checkpoints_list_accepts_every_form_of_a_name(capsys):
    outs = [run_cli(capsys, "checkpoints", "list", "--model", m, "--format", "json") for m in
            ("70m", "pythia-70m", "EleutherAI/pythia-70m")]
    assert all(rc == 0 for rc, _, _ in outs)
    assert outs[0][1] == outs[1][1] == outs[2][1]
    assert json.loads(outs[0][1])[0]["model"] == "pythia-70m"
    rc, _, err = run_cli(capsys, "checkpoints", "list", "--model", "70M")
    assert rc == 2 and "(did you mean pythia-70m?)" in assert_one_error_line(err)


def test_train_accepts_pythia_names_as_one_size(prefix, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "s", "--sizes", "14m", "pythia-14m")
    assert rc == 2 and "names a size twice: 14m 14m" in assert_one_error_line(err)


def test_other_settings_name_the_setting_and_both_values(prefix, tmp_path, capsys):
    out = tmp_path / "s"
    run_train(prefix, out, steps=4, checkpoint_every=2)
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", out, "--sizes", "micro-50k", "--steps", 4,
                         "--batch-size", BATCH, "--checkpoint-every", 2, "--seed", 5)
    assert rc == 2
    assert "holds a run with other settings: settings.seed is 1234 there, 5 now" in assert_one_error_line(err)


def test_demo_other_settings_name_the_setting(tmp_path, capsys):
    from pythia_suite.demo import DemoContext, PRESETS, _check_settings
    from pythia_suite.errors import UserError

    _check_settings(DemoContext(tmp_path, "tiny", PRESETS["tiny"]))
    with pytest.raises(UserError, match=r"holds a demo run with other settings: preset is 'tiny' there, 'default' now"):
        _check_settings(DemoContext(tmp_path, "default", PRESETS["default"]))


def test_help_says_where_outputs_go(capsys):
    from pythia_suite.cli import main

    for argv, words in ((["demo"], ["report.md", "tables/", "figures/"]),
                        (["memorization"], ["OUT.zarr", "OUT_histogram.parquet", "--figures"]),
                        (["train"], ["val_log.parquet", "SUITE/<model>/step<N>/"])):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for w in words:
            assert w in out, (argv, w)


def test_data_batch_text_and_batch_size_warning(prefix, capsys):
    from pythia_suite.data import TrainingOrder

    rc, out, err = run_cli(capsys, "data", "batch", prefix, "--step", 1, "--batch-size", 2, "--text")
    assert rc == 0 and err == ""
    order = TrainingOrder(prefix, batch_size=2)
    assert f"--- sequence 2 (step 1) ---\n{order.decode(2)}\n" in out
    assert f"--- sequence 3 (step 1) ---\n{order.decode(3)}\n" in out
    rc, _, err = run_cli(capsys, "data", "batch", prefix, "--step", 0)
    assert rc == 2 and "give --out FILE.npy (the tokens) or --text" in assert_one_error_line(err)
    rc, out, err = run_cli(capsys, "data", "batch", prefix, "--step", 0, "--text", "--batch-size", 1)
    assert rc == 0 and err == ""


def test_train_holds_out_items_logs_validation_and_ends_with_a_line_per_model(prefix, tmp_path, capsys):
    from pythia_suite.checkpoints import Suite
    from pythia_suite.data import TrainingOrder
    from pythia_suite.tables import read_table

    out = tmp_path / "s"
    batch = 4 * BATCH  # few steps: the test stays fast
    rc, stdout, _ = run_cli(capsys, "train", "--data", prefix, "--out", out, "--sizes", "micro-50k", "micro-200k",
                            "--batch-size", batch, "--checkpoint-every", 8, "--val-items", 40, "--quiet")
    assert rc == 0
    order = TrainingOrder(prefix, batch_size=batch)
    total = order.num_steps - 2  # 40 held-out items need two batches of 32 without --steps
    val = Suite.load(out).data_info["validation"]
    assert val == {"first": total * batch, "n_items": 40}
    log = pd.read_parquet(out / "micro-50k" / "train_log.parquet")
    assert log["step"].max() == total - 1  # the held-out items were never a trained step
    vlog = read_table(out / "micro-50k" / "val_log.parquet")
    assert vlog.attrs["schema"] == "validation_log"
    assert vlog["step"].tolist() == Suite.load(out).steps("micro-50k")  # every checkpoint
    assert (vlog["val_items"] == 40).all() and vlog["val_loss"].iloc[-1] < vlog["val_loss"].iloc[0]
    lines = [line for line in stdout.splitlines() if line.startswith("micro-")]
    assert [line.split(":")[0] for line in lines] == ["micro-50k", "micro-200k"]
    last = vlog["val_loss"].iloc[-1]
    assert f"validation loss {last:.3f} (40 held-out items)" in lines[0]
    assert f"{total} steps, final loss" in lines[0] and "tokens/s" in lines[0]
    # the loss on held-out items is what model.loss computes on them
    model = Suite.load(out).load_model("micro-50k", total)
    items = order.sequences(range(total * batch, total * batch + 40))
    assert model.loss(items).item() == pytest.approx(last, rel=1e-5)  # other micro-batches: ~84 eps of the loss


def test_val_items_out_of_range(prefix, tmp_path, capsys):
    from pythia_suite.data import TrainingOrder

    n = TrainingOrder(prefix, batch_size=BATCH).num_steps
    rc, _, err = run_cli(capsys, "train", "--data", prefix, "--out", tmp_path / "s", "--sizes", "micro-50k",
                         "--batch-size", BATCH, "--steps", n - 1, "--val-items", 9)
    assert rc == 2 and "--val-items 9 out of range: 8 items follow the last trained step" in assert_one_error_line(err)
