"""The checkpoint index (`pythia_suite.checkpoints`, `pythia-suite checkpoints`): the manifest a
training writes, the `Suite` API over it, the real Pythia index, verification and bad input.

    .venv/bin/python -m pytest tests/test_checkpoints.py -q

One tiny suite (micro-50k and micro-200k, 12 steps of batch 8, checkpoints 0,1,2,4,8,12) is
trained once per module and never modified; tests that corrupt it work on a copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from _train_helpers import BATCH, SEQ_LEN, SIZES, build_data, one_error_line, run_cli, run_train, sha256
from pythia_suite.checkpoints import (
    PYTHIA_STEPS,
    SCHEMA,
    Suite,
    default_manifest_path,
    pythia_manifest,
    validate_manifest,
    verify_suite,
)
from pythia_suite.errors import UserError
from pythia_suite.model import GPTNeoX
from pythia_suite.sizes import PYTHIA_SIZES

from conftest import FORWARD_RTOL, scaled_error

STEPS = [0, 1, 2, 4, 8, 12]
MANIFEST = "checkpoints_manifest.json"


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ck")
    prefix = build_data(root)
    run_train(prefix, root / "suite", sizes=SIZES, steps=12)
    return root / "suite"


@pytest.fixture
def suite_copy(suite_dir, tmp_path) -> Path:
    """A private copy of the suite that a test may corrupt."""
    return Path(shutil.copytree(suite_dir, tmp_path / "suite"))


def tokens(batch: int = 2, length: int = SEQ_LEN) -> torch.Tensor:
    return torch.randint(0, 300, (batch, length), generator=torch.Generator().manual_seed(0))


def edit_manifest(folder: Path, edit) -> Path:
    path = folder / MANIFEST
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    return path


# ---- the manifest a training writes ----------------------------------------------------------


def test_trained_manifest_validates_and_lists(suite_dir):
    manifest = json.loads((suite_dir / MANIFEST).read_text())
    validate_manifest(manifest)
    assert manifest["schema"] == SCHEMA
    for suite in (Suite.load(suite_dir), Suite.load(suite_dir / MANIFEST)):
        assert suite.name == "suite"
        assert suite.models() == SIZES
        for model in SIZES:
            assert suite.steps(model) == STEPS
            assert suite.params(model) == manifest["models"][SIZES.index(model)]["params"]
        assert [(c.model, c.step) for c in suite.checkpoints()] == [(m, s) for m in SIZES for s in STEPS]


def test_resolve(suite_dir):
    suite = Suite.load(suite_dir)
    ck = suite.resolve("micro-50k", 8)
    assert (ck.model, ck.step, ck.tokens_seen) == ("micro-50k", 8, 8 * BATCH * SEQ_LEN)
    assert ck.location == "micro-50k/step8" and not ck.is_remote
    assert ck.path == suite_dir.resolve() / "micro-50k" / "step8"
    assert ck.sha256 == sha256(ck.path / "model.safetensors")
    assert suite.tokens_seen("micro-200k", 12) == 12 * BATCH * SEQ_LEN

    assert suite.resolve("micro-50k", index=-1).step == 12
    assert suite.resolve("micro-50k", index=0).step == 0
    assert suite.resolve("micro-50k", index=3).step == 4
    with pytest.raises(UserError, match=r"checkpoint index 6 out of range for micro-50k \(6 checkpoints\)"):
        suite.resolve("micro-50k", index=6)
    with pytest.raises(UserError, match="exactly one of a step and an index"):
        suite.resolve("micro-50k", 4, index=1)
    with pytest.raises(UserError, match="exactly one"):
        suite.resolve("micro-50k")

    assert suite.resolve("micro-50k", 6, nearest=True).step == 4  # a tie goes to the earlier step
    assert suite.resolve("micro-50k", 7, nearest=True).step == 8
    assert suite.resolve("micro-50k", 3, nearest=True).step == 2
    assert suite.resolve("micro-50k", 1000, nearest=True).step == 12
    assert suite.resolve("micro-50k", 8, nearest=True).step == 8


def test_unknown_model_and_step_messages(suite_dir):
    suite = Suite.load(suite_dir)
    with pytest.raises(UserError, match=r"unknown model 'micro-1m' \(did you mean micro-50k or micro-200k\?\); "
                                        r"this suite has: micro-50k, micro-200k"):
        suite.resolve("micro-1m", 4)
    with pytest.raises(UserError, match=r"unknown step 6 for micro-50k; nearest: 4, 8 \(steps run 0..12, 6 checkpoints\)"):
        suite.resolve("micro-50k", 6)
    with pytest.raises(UserError, match=r"unknown step 99 for micro-50k; nearest: 12 "):
        suite.resolve("micro-50k", 99)
    with pytest.raises(UserError, match="unknown step 6"):
        suite.load_model("micro-50k", 6)


def test_load_model_equals_from_pretrained(suite_dir):
    suite = Suite.load(suite_dir)
    x = tokens()
    for model in SIZES:
        net = suite.load_model(model, 12)
        assert isinstance(net, GPTNeoX) and not net.training
        ref = GPTNeoX.from_pretrained(suite_dir / model / "step12")
        with torch.no_grad():
            assert torch.equal(net(x), ref(x))
    half = suite.load_model("micro-50k", 8, dtype=torch.bfloat16)
    assert half.embed_out.weight.dtype == torch.bfloat16


def test_load_model_nearest_and_steps_differ(suite_dir):
    suite = Suite.load(suite_dir)
    a = suite.load_model("micro-50k", 7, nearest=True).state_dict()
    b = GPTNeoX.from_pretrained(suite_dir / "micro-50k" / "step8").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    c = suite.load_model("micro-50k", 0).state_dict()
    assert not torch.equal(c["embed_out.weight"], b["embed_out.weight"])  # training changed the weights


def test_trained_checkpoint_loads_in_transformers(suite_dir):
    transformers = pytest.importorskip("transformers")
    folder = suite_dir / "micro-200k" / "step12"
    theirs, info = transformers.GPTNeoXForCausalLM.from_pretrained(
        folder, attn_implementation="eager", output_loading_info=True
    )
    assert not any(info.values()), info
    ours = GPTNeoX.from_pretrained(folder)
    x = tokens()
    with torch.no_grad():
        assert scaled_error(ours(x), theirs.eval()(x).logits) < FORWARD_RTOL  # another kernel: reordered float32 sums


# ---- the real Pythia index --------------------------------------------------------------------


def test_repository_manifest_is_generated():
    """Pins the committed file to the generator: regenerate with
    `json.dumps(pythia_manifest(), indent=1)` after changing either."""
    path = default_manifest_path()
    assert path.name == MANIFEST and path.parent == Path(__file__).resolve().parent.parent
    assert json.loads(path.read_text()) == pythia_manifest()


def test_pythia_manifest_facts():
    m = pythia_manifest()
    validate_manifest(m)
    expected = [f"pythia-{s}{d}" for s in PYTHIA_SIZES for d in ("", "-deduped")]
    assert [x["name"] for x in m["models"]] == expected and len(expected) == 20
    assert list(PYTHIA_SIZES) == ["14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]
    for model in m["models"]:
        cks = model["checkpoints"]
        assert len(cks) == 154 and cks[0]["step"] == 0 and cks[-1]["step"] == 143000
        assert [c["step"] for c in cks] == PYTHIA_STEPS
        for c in cks:
            assert c["location"] == f"hf://EleutherAI/{model['name']}@step{c['step']}"
            assert c["tokens_seen"] == c["step"] * 2097152
            assert c["sha256"] is None
    by_name = {x["name"]: x for x in m["models"]}
    for name in ("pythia-70m", "pythia-70m-deduped"):
        assert by_name[name]["params"] == 70_426_624
        assert by_name[name]["non_embedding_params"] == 18_915_328
    assert m["data"]["seq_len"] == 2048 and m["data"]["batch_size"] == 1024


def test_default_suite_is_pythia():
    suite = Suite.load()
    assert suite.name == "pythia" and len(suite.models()) == 20
    ck = suite.resolve("pythia-160m-deduped", index=-1)
    assert ck.is_remote and ck.path is None and ck.step == 143000
    assert ck.hf_repo_revision == ("EleutherAI/pythia-160m-deduped", "step143000")
    assert suite.resolve("pythia-70m", 1500, nearest=True).step == 1000
    with pytest.raises(UserError, match="nearest: 512, 1000"):
        suite.resolve("pythia-70m", 700)


# ---- checkpoints list ---------------------------------------------------------------------------


def test_cli_list_json(suite_dir, capsys):
    rc, out, err = run_cli(capsys, "checkpoints", "list", suite_dir / MANIFEST, "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 2 * len(STEPS)
    for row in rows:
        assert isinstance(row, dict) and {"model", "step", "tokens_seen", "location"} <= row.keys()
    assert rows[0] == {"model": "micro-50k", "step": 0, "tokens_seen": 0, "location": "micro-50k/step0",
                       "sha256": sha256(suite_dir / "micro-50k" / "step0" / "model.safetensors")}

    rc, out, _ = run_cli(capsys, "checkpoints", "list", suite_dir, "--model", "micro-200k", "--format", "json")
    assert rc == 0 and [(r["model"], r["step"]) for r in json.loads(out)] == [("micro-200k", s) for s in STEPS]


def test_cli_list_table(suite_dir, capsys):
    rc, out, _ = run_cli(capsys, "checkpoints", "list", suite_dir, "--format", "table")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["model", "step", "tokens_seen", "location"]
    assert len(lines) == 1 + 2 * len(STEPS)
    assert lines[-1].split() == ["micro-200k", "12", str(12 * BATCH * SEQ_LEN), "micro-200k/step12"]

    rc, out, _ = run_cli(capsys, "checkpoints", "list", "--model", "pythia-70m")  # the default: Pythia
    assert rc == 0 and len(out.splitlines()) == 155
    assert out.splitlines()[-1].split() == ["pythia-70m", "143000", str(143000 * 2097152), "hf://EleutherAI/pythia-70m@step143000"]


# ---- checkpoints verify -------------------------------------------------------------------------


def test_verify_passes_on_a_fresh_suite(suite_dir, capsys):
    rc, out, err = run_cli(capsys, "checkpoints", "verify", suite_dir / MANIFEST)
    assert rc == 0 and err == ""
    assert out.splitlines() == [f"checked {2 * len(STEPS)} local checkpoints; 0 on the hub not checked (offline)", "ok"]
    assert verify_suite(Suite.load(suite_dir)).problems == []


def test_verify_pythia_index_checks_nothing_offline(capsys):
    rc, out, _ = run_cli(capsys, "checkpoints", "verify")
    assert rc == 0 and out.splitlines()[0] == "checked 0 local checkpoints; 3080 on the hub not checked (offline)"


def test_verify_catches_a_flipped_byte(suite_copy, capsys):
    weights = suite_copy / "micro-200k" / "step4" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    rc, _, err = run_cli(capsys, "checkpoints", "verify", suite_copy)
    assert rc == 2
    line = one_error_line(err)
    assert "micro-200k step 4: sha256" in line and "does not match the manifest" in line


def test_verify_catches_identical_weights(suite_copy, capsys):
    src = suite_copy / "micro-50k" / "step8" / "model.safetensors"
    shutil.copyfile(src, suite_copy / "micro-50k" / "step12" / "model.safetensors")

    def fix_sha(m):  # so that the duplicate is the only problem
        ck = next(c for c in m["models"][0]["checkpoints"] if c["step"] == 12)
        ck["sha256"] = sha256(src)

    edit_manifest(suite_copy, fix_sha)
    rc, _, err = run_cli(capsys, "checkpoints", "verify", suite_copy)
    assert rc == 2
    assert "micro-50k: steps 8 and 12 have identical weights" in one_error_line(err)


def test_verify_catches_missing_weights(suite_copy, capsys):
    (suite_copy / "micro-50k" / "step2" / "model.safetensors").unlink()
    rc, _, err = run_cli(capsys, "checkpoints", "verify", suite_copy)
    assert rc == 2 and "micro-50k step 2:" in one_error_line(err) and "is missing" in err


# ---- bad input ------------------------------------------------------------------------------------


def test_cli_list_unknown_model(suite_dir, capsys):
    rc, _, err = run_cli(capsys, "checkpoints", "list", suite_dir, "--model", "micro-9z")
    assert rc == 2
    assert ("unknown model 'micro-9z' (did you mean micro-50k or micro-200k?); this suite has: micro-50k, micro-200k"
            in one_error_line(err))


def _drop_models(m):
    del m["models"]


def _bad_schema(m):
    m["schema"] = "pythia-suite/manifest/v0"


def _escape_up(m):
    m["models"][1]["checkpoints"][2]["location"] = "../x"


def _escape_abs(m):
    m["models"][0]["checkpoints"][0]["location"] = "/etc"


def _escape_inner(m):
    m["models"][0]["checkpoints"][0]["location"] = "micro-50k/../../elsewhere"


def _steps_unsorted(m):
    cks = m["models"][0]["checkpoints"]
    cks[0], cks[1] = cks[1], cks[0]


def _bad_step_type(m):
    m["models"][0]["checkpoints"][3]["step"] = "4"


def _bad_sha(m):
    m["models"][0]["checkpoints"][3]["sha256"] = "abc"


def _duplicate_model(m):
    m["models"][1]["name"] = m["models"][0]["name"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (_drop_models, "missing field 'models'"),
        (_bad_schema, "schema is 'pythia-suite/manifest/v0', expected 'pythia-suite/manifest/v1'"),
        (_escape_up, r"models\[1\] checkpoints\[2\]: location '../x' escapes the manifest's folder"),
        (_escape_abs, "location '/etc' escapes the manifest's folder"),
        (_escape_inner, "escapes the manifest's folder"),
        (_steps_unsorted, "checkpoint steps must be unique and increasing"),
        (_bad_step_type, "field 'step' must be int, got str"),
        (_bad_sha, "sha256 must be 64 hex characters or null"),
        (_duplicate_model, "duplicate model name 'micro-50k'"),
    ],
)
@pytest.mark.parametrize("command", ["list", "verify"])
def test_cli_bad_manifest(suite_copy, capsys, edit, message, command):
    path = edit_manifest(suite_copy, edit)
    rc, out, err = run_cli(capsys, "checkpoints", command, path)
    assert rc == 2 and out == ""
    line = one_error_line(err)
    assert re.search(message, line), line
    assert str(path) in line  # names the file
    with pytest.raises(UserError):
        Suite.load(path)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '"text"'])
def test_cli_manifest_not_an_object(tmp_path, capsys, content):
    path = tmp_path / MANIFEST
    path.write_text(content)
    rc, _, err = run_cli(capsys, "checkpoints", "list", path)
    assert rc == 2 and str(path) in one_error_line(err)


def test_cli_missing_manifest(tmp_path, capsys):
    for target in (tmp_path / "nope.json", tmp_path):  # a missing file; a folder without a manifest
        rc, _, err = run_cli(capsys, "checkpoints", "list", target)
        assert rc == 2 and "manifest not found" in one_error_line(err)
        rc, _, err = run_cli(capsys, "checkpoints", "verify", target)
        assert rc == 2 and "manifest not found" in one_error_line(err)


def test_config_that_does_not_match_the_weights(suite_copy):
    config_path = suite_copy / "micro-50k" / "step4" / "config.json"
    config = json.loads(config_path.read_text())
    config["hidden_size"] = 64  # the weights are 48 wide
    config_path.write_text(json.dumps(config))
    suite = Suite.load(suite_copy)
    with pytest.raises(UserError, match="config.json says hidden_size 64 but gpt_neox.embed_in.weight is"):
        suite.load_model("micro-50k", 4)
    suite.load_model("micro-50k", 8)  # the others still load


def test_missing_checkpoint_folder(suite_copy):
    shutil.rmtree(suite_copy / "micro-200k" / "step2")
    with pytest.raises(UserError, match=r"checkpoint folder missing: .*step2 \(micro-200k step 2\)"):
        Suite.load(suite_copy).load_model("micro-200k", 2)


def test_a_model_without_checkpoints_yet(suite_dir, tmp_path, capsys):
    """A multi-size training stopped in its first size lists the second with no checkpoints."""
    from pythia_suite.train import TrainingDiverged

    out = tmp_path / "stopped"
    with pytest.raises(TrainingDiverged):
        run_train(Path(f"{suite_dir}/../data/corpus"), out, sizes=SIZES, steps=8, lr=1e6)
    suite = Suite.load(out)
    assert suite.models() == SIZES and suite.steps("micro-200k") == []
    with pytest.raises(UserError, match="micro-200k has no checkpoints yet"):
        suite.resolve("micro-200k", 0)
    with pytest.raises(UserError, match="micro-200k has no checkpoints yet"):
        suite.resolve("micro-200k", index=-1, nearest=True)
    rc, out_text, _ = run_cli(capsys, "checkpoints", "list", out, "--model", "micro-200k", "--format", "json")
    assert rc == 0 and json.loads(out_text) == []
    rc, _, _ = run_cli(capsys, "checkpoints", "verify", out)
    assert rc == 0


def test_load_model_checks_the_recorded_sha256(suite_copy):
    weights = suite_copy / "micro-50k" / "step4" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    suite = Suite.load(suite_copy)
    with pytest.raises(UserError, match=r"micro-50k step 4: .*model.safetensors has sha256 .* the manifest records"):
        suite.load_model("micro-50k", 4)
    assert suite.load_model("micro-50k", 4, verify=False) is not None  # an explicit opt-out
    suite.load_model("micro-50k", 8)


def test_load_model_refuses_nan_weights(suite_copy):
    from safetensors.torch import load_file, save_file

    from pythia_suite.fileio import sha256_file

    weights = suite_copy / "micro-200k" / "step8" / "model.safetensors"
    state = load_file(weights)
    state["gpt_neox.layers.0.attention.dense.weight"][0, 0] = float("nan")
    save_file(state, weights, metadata={"format": "pt"})
    sha = sha256_file(weights)

    def record(m):  # the manifest agrees with the file: only the NaN check can catch it
        ck = next(c for c in m["models"][1]["checkpoints"] if c["step"] == 8)
        ck["sha256"] = sha

    edit_manifest(suite_copy, record)
    with pytest.raises(UserError, match="micro-200k step 8 .*weights hold NaN or inf .*attention.dense.weight"):
        Suite.load(suite_copy).load_model("micro-200k", 8)
