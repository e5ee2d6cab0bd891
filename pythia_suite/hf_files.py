"""The tokenizer files of a Hugging Face model folder, written as plain JSON (no transformers needed).

Real Pythia folders on the hub carry ``tokenizer.json``, ``tokenizer_config.json`` and
``special_tokens_map.json`` beside the weights, and tools load a folder by its path alone:

    AutoTokenizer.from_pretrained(folder)
    lm_eval --model hf --model_args pretrained=folder

Without them transformers 5 builds an empty GPT-NeoX tokenizer that encodes every string to ``[]``.
`write_tokenizer_files` puts the same three files into any checkpoint folder. The special tokens
are Pythia's: ``<|endoftext|>`` is bos, eos and unk, ``<|padding|>`` the pad token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"


def tokenizer_file_contents(tokenizer_json: str | os.PathLike, model_max_length: int) -> dict[str, bytes]:
    """File name -> bytes of the three tokenizer files for the tokenizers file `tokenizer_json`."""
    from tokenizers import Tokenizer

    path = Path(tokenizer_json)
    try:
        raw = path.read_bytes()
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except OSError as e:
        raise UserError(f"cannot read the tokenizer {path}: {e.strerror or e}") from None
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise UserError(f"{path} is not a tokenizers tokenizer.json ({str(e).splitlines()[0]})") from None
    if tok.token_to_id(EOS_TOKEN) is None:
        raise UserError(f"the tokenizer {path} has no {EOS_TOKEN!r} token, which Pythia folders use as bos/eos")
    special = {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN}
    if tok.token_to_id(PAD_TOKEN) is not None:
        special["pad_token"] = PAD_TOKEN
    config = {
        # transformers 4 reads this as GPTNeoXTokenizerFast, transformers 5 as its tokenizers backend;
        # both take tokenizer.json as it is.
        "tokenizer_class": "GPTNeoXTokenizer",
        **special,
        "add_bos_token": False,  # Pythia was trained without a leading token
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,  # decode gives back the text exactly
        "model_max_length": int(model_max_length),
    }
    dump = lambda d: (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()  # noqa: E731
    return {"tokenizer.json": raw, "tokenizer_config.json": dump(config), "special_tokens_map.json": dump(special)}


def write_tokenizer_files(folder: str | os.PathLike, tokenizer_json: str | os.PathLike, model_max_length: int) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `folder`.

    Meant for a folder that is itself being written under a temporary name (as `save_checkpoint`
    does), so the files appear with the weights or not at all.
    """
    folder = Path(folder)
    for name, data in tokenizer_file_contents(tokenizer_json, model_max_length).items():
        (folder / name).write_bytes(data)


def has_tokenizer_files(folder: str | os.PathLike) -> bool:
    return all((Path(folder) / name).is_file() for name in TOKENIZER_FILES[:2])


__all__ = ["TOKENIZER_FILES", "has_tokenizer_files", "tokenizer_file_contents", "write_tokenizer_files"]
