"""Checkpoint folders load in transformers unchanged: tokenizer files beside the weights
(`pythia_suite.hf_files`), written by the trainer and fetched with hub checkpoints.

    .venv/bin/python -m pytest tests/test_hf_files.py -q
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch

from _train_helpers import SEQ_LEN, build_data, run_train
from pythia_suite.checkpoints import HUB_PATTERNS, Checkpoint, Suite, download_checkpoint
from pythia_suite.data.build import load_tokenizer
from pythia_suite.errors import UserError
from pythia_suite.hf_files import TOKENIZER_FILES, tokenizer_file_contents
from pythia_suite.model import GPTNeoX

from conftest import FORWARD_RTOL, scaled_error

TEXTS = [
    "alpha beta gamma",
    " delta  epsilon\nzeta\n\n",
    "theta<|endoftext|>iota kappa",
    "  lambda mu <|padding|> café 42!",
    "",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(suite folder, data prefix) of a 12-step micro-50k run."""
    root = tmp_path_factory.mktemp("hf")
    prefix = build_data(root)
    run_train(prefix, root / "suite", steps=12)
    return root / "suite", prefix


def test_every_checkpoint_folder_has_the_tokenizer_files(trained):
    suite_dir, prefix = trained
    data_tokenizer = Path(f"{prefix}.tokenizer.json").read_bytes()
    folders = sorted((suite_dir / "micro-50k").glob("step*"))
    assert [f.name for f in folders] == ["step0", "step1", "step12", "step2", "step4", "step8"]
    for folder in folders:
        assert all((folder / name).is_file() for name in TOKENIZER_FILES)
        assert (folder / "tokenizer.json").read_bytes() == data_tokenizer
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["eos_token"] == config["bos_token"] == config["unk_token"] == "<|endoftext|>"
        assert config["pad_token"] == "<|padding|>" and config["model_max_length"] == SEQ_LEN
        special = json.loads((folder / "special_tokens_map.json").read_text())
        assert special == {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}


def test_autotokenizer_gives_our_token_ids(trained):
    transformers = pytest.importorskip("transformers")
    suite_dir, prefix = trained
    ours = load_tokenizer(f"{prefix}.tokenizer.json")
    theirs = transformers.AutoTokenizer.from_pretrained(suite_dir / "micro-50k" / "step12")
    assert (theirs.eos_token_id, theirs.bos_token_id, theirs.unk_token_id, theirs.pad_token_id) == (0, 0, 0, 1)
    assert theirs.model_max_length == SEQ_LEN
    for text in TEXTS:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert theirs(text)["input_ids"] == ids, text
        assert theirs.encode(text) == ids
        assert theirs.decode(ids) == ours.decode(ids, skip_special_tokens=False)
    assert theirs("alpha beta gamma")["input_ids"], "an empty tokenizer encodes everything to []"


def test_automodel_gives_our_logits(trained):
    transformers = pytest.importorskip("transformers")
    folder = trained[0] / "micro-50k" / "step12"
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tok("alpha beta gamma delta epsilon zeta")["input_ids"]])
    ours = GPTNeoX.from_pretrained(folder)
    with torch.no_grad():
        assert scaled_error(ours(ids), theirs(ids).logits) < FORWARD_RTOL  # another kernel: reordered float32 sums


def test_suites_without_tokenizer_files_still_load(trained, tmp_path):
    suite_dir = Path(shutil.copytree(trained[0], tmp_path / "old"))
    for f in suite_dir.glob("*/step*/tokenizer*.json"):
        f.unlink()
    for f in suite_dir.glob("*/step*/special_tokens_map.json"):
        f.unlink()
    model = Suite.load(suite_dir).load_model("micro-50k", 12)
    assert model(torch.zeros(1, 4, dtype=torch.long)).shape[:2] == (1, 4)


def test_hub_download_fetches_the_tokenizer_files(monkeypatch, tmp_path):
    """Offline: the allow-patterns handed to snapshot_download cover a Pythia hub folder's files."""
    hub = pytest.importorskip("huggingface_hub")
    seen = {}

    def fake_snapshot_download(repo, revision, allow_patterns):
        seen.update(repo=repo, revision=revision, patterns=allow_patterns)
        return str(tmp_path)

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    ck = Checkpoint("pythia-70m", 1000, 0, "hf://EleutherAI/pythia-70m@step1000", None, None)
    assert download_checkpoint(ck) == tmp_path
    assert (seen["repo"], seen["revision"]) == ("EleutherAI/pythia-70m", "step1000")
    hub_folder = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json"]
    for name in hub_folder:
        assert any(fnmatch.fnmatch(name, p) for p in seen["patterns"]), name
    for name in ("pytorch_model.bin", "optimizer.pt", "README.md"):
        assert not any(fnmatch.fnmatch(name, p) for p in seen["patterns"]), name
    assert set(TOKENIZER_FILES) <= set(HUB_PATTERNS)


def test_tokenizer_without_end_of_text_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    path = tmp_path / "tokenizer.json"
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(path))
    with pytest.raises(UserError, match="no '<\\|endoftext\\|>' token"):
        tokenizer_file_contents(path, 16)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="is not a tokenizers tokenizer.json"):
        tokenizer_file_contents(tmp_path / "bad.json", 16)
