"""Tidy tables: the schemas of every table the suite writes, in one place, and the one writer.

Long format: one row per observation, one column per variable. Every table starts with the keys
``suite, model, params, step, tokens_seen``. Tables are Parquet files whose metadata block
(key ``pythia_suite``) holds the package version, the git commit (if any), the seeds and the
configuration of the command that wrote them, and the notes on degenerate results
(`pythia_suite.notes`); `read_table_meta` returns it.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import pandas as pd

from . import __version__
from .errors import UserError
from .fileio import atomic_outputs

KEYS: dict[str, str] = {
    "suite": "string",  # suite name from the manifest
    "model": "string",  # model name, e.g. pythia-70m-deduped or micro-1m
    "params": "int64",  # total parameters
    "step": "int64",  # checkpoint step (optimizer steps taken)
    "tokens_seen": "int64",  # context tokens seen by that checkpoint
}

SCHEMAS: dict[str, dict[str, str]] = {
    # one row per optimizer step of one model
    "train_log": {
        "loss": "float64",  # mean cross-entropy (nats/token) of the batch trained on at this step
        "lr": "float64",  # learning rate used for this step
        "grad_norm": "float64",  # global gradient norm before clipping
        "fingerprint": "string",  # batch_fingerprint of the step's batch
    },
    # memorization (analyses/memorization.py): prompt 32 tokens, greedy continuation of 32
    "memorization": {  # one row per model x step x seen
        "seen": "bool",  # whether the checkpoint had trained on these sequences (False: control)
        "n_sequences": "int64",
        "n_memorized": "int64",  # sequences whose 32 greedy tokens all match
        "memorized_frac": "float64",
        "mean_score": "float64",  # mean fraction of the 32 positions matched
    },
    "memorization_histogram": {  # one row per model x step x seen x matched
        "seen": "bool",
        "matched": "int64",  # 0..32 positions matched
        "n_sequences": "int64",
    },
    "memorization_sequences": {  # one row per model x step x sequence
        "sequence": "int64",  # global index in the training order
        "seen": "bool",
        "matched": "int64",
        "score": "float64",  # matched / 32
        "prefix_match": "int64",  # length of the exact matching prefix of the greedy continuation
    },
    "memorization_order_test": {  # one row per model (its last step): Poisson KS test of bin counts
        "bin_size": "int64",
        "n_bins": "int64",
        "mean_per_bin": "float64",
        "ks_statistic": "float64",
        "ks_pvalue": "float64",
    },
    "memorization_predictability": {  # target = (model, step); one row per predictor checkpoint
        "predictor_model": "string",
        "predictor_step": "int64",
        "n_sequences": "int64",  # sequences every compared checkpoint has seen
        "tp": "int64",
        "fp": "int64",
        "fn": "int64",
        "tn": "int64",
        "precision": "float64",
        "recall": "float64",
    },
    "canary_memorization": {  # micro-Pile canaries, one row per model x step x canary
        "canary": "int64",
        "repeats": "int64",  # copies of the canary in the corpus
        "matched": "int64",
        "score": "float64",
        "prefix_match": "int64",
    },
    # gender bias and the pronoun-swap intervention (analyses/bias.py)
    "bias": {  # one row per model x step x benchmark x subset x metric
        "benchmark": "string",  # winobias | crows_pairs | lambada | micropile_winobias | micropile_crows
        "subset": "string",  # type1_pro, type1, average, all, gender, ...
        "metric": "string",  # acc_loglik, acc_generate, bias_loglik, bias_generate, pct_stereotype, likelihood_diff, acc, perplexity, loss_per_token
        "value": "float64",  # accuracies and shares in [0, 1]; log-likelihoods in nats
        "n_items": "int64",
    },
    "bias_comparison": {  # an intervention (model) against its parent, one row per step >= its resume step x metric
        "parent": "string",
        "start_step": "int64",  # first step trained on transformed batches
        "transform": "string",
        "benchmark": "string",
        "subset": "string",
        "metric": "string",
        "value": "float64",  # the intervention's
        "parent_value": "float64",  # the parent's at the same step (NaN if it has no checkpoint there)
    },
    "bias_transform_counts": {  # one row per transformed step x form of the map of an intervention
        "token": "string",  # the form's text, e.g. " he" or " himself" (one token or a token sequence)
        # source | target | unmapped (a source whose target cannot be written in the tokenizer); for a map
        # that changes item lengths also dropped (token "": tokens pushed past their item's end, counted in
        # whole_word_before) and padded (token: the end-of-text token; ids appended, in whole_word_after)
        "role": "string",
        "whole_word_before": "int64",  # occurrences as a whole word in the parent's batch
        "inside_word_before": "int64",  # occurrences inside a longer word (never mapped)
        "whole_word_after": "int64",  # the same in the transformed batch (0 for every source)
        "inside_word_after": "int64",
    },
    # term frequency (pythia_suite/data/counts.py, analyses/term_frequency.py)
    "term_counts": {  # one row per term x checkpoint step; the training order's, so model "" and params 0
        "term": "string",  # the term as given ("24", "is 24 times") or "ids:ID,ID,..."
        "count": "int64",  # occurrences in the batch trained on at this step (0 past the data's last step)
        "count_seen": "int64",  # occurrences in steps 0..step-1: what checkpoint `step` has seen
        "definition": "string",  # "token" (digit runs / token sequences) or "pythia" (Pythia's text rule)
    },
    "term_frequency": {  # one row per model x step x task x shots x x1
        "task": "string",  # "times" or "plus"
        "shots": "int64",  # k examples before the question
        "x1": "int64",  # the first operand, 0..99
        "n": "int64",  # questions asked (one per x2)
        "n_correct": "int64",  # first integer of the greedy answer equals x1 op x2
        "accuracy": "float64",
        "frequency": "int64",  # occurrences of x1 in the data the checkpoint has seen
        "definition": "string",  # counting definition of `frequency`
    },
    "term_frequency_answers": {  # one row per model x step x task x shots x x1 x x2: each question's answer
        "task": "string",
        "shots": "int64",
        "x1": "int64",
        "x2": "int64",
        "answer": "int64",  # the right answer, x1 op x2
        "output": "string",  # the greedy output, cut at the first newline
        "correct": "bool",  # its first integer equals the answer (Pythia's rule)
    },
    "term_frequency_gap": {  # one row per model x step x task x shots
        "task": "string",
        "shots": "int64",
        "n_x1": "int64",  # x1 values per group (10: the most and least frequent ten)
        "top_accuracy": "float64",  # mean accuracy of the n_x1 most frequent x1
        "bottom_accuracy": "float64",  # mean accuracy of the n_x1 least frequent x1
        "delta": "float64",  # top_accuracy - bottom_accuracy
        "delta_low": "float64",  # bootstrap 2.5% quantile of delta (questions resampled within each x1)
        "delta_high": "float64",  # bootstrap 97.5% quantile
        "spearman": "float64",  # rank correlation of accuracy with log frequency over every x1 (NaN if constant)
        "spearman_pvalue": "float64",
    },
    # lm-evaluation-harness tasks (pythia_suite/eval/evaluate.py, `pythia-suite evaluate`)
    "evaluate": {  # one row per model x step x task x metric x filter
        "task": "string",  # harness task name
        "metric": "string",  # e.g. acc, exact_match (the harness' "acc,none" split in two)
        "filter": "string",  # the harness' filter name, e.g. none, first_integer
        "n_shot": "int64",  # few-shot examples in each prompt
        "value": "float64",
        "stderr": "float64",  # NaN where the harness gives none
        "n": "int64",  # items scored
    },
    "evaluate_items": {  # one row per model x step x task x item x filter x metric
        "task": "string",
        "n_shot": "int64",
        "filter": "string",
        "doc_id": "int64",  # the item's index in the task's evaluation split
        "target": "string",  # gold answer as text (multiple choice: the gold choice's index)
        "response": "string",  # the raw generated text; multiple choice: the chosen index; loglikelihood: greedy match
        "answer": "string",  # what the metric scored: generation after the task's filters (e.g. the first integer,
        # or the harness' "[invalid]" when there is none); multiple choice: the chosen choice's text
        "loglikelihood": "float64",  # of the target (multiple choice: of the gold choice); NaN for generation
        "metric": "string",
        "value": "float64",  # the item's score, e.g. 1.0 / 0.0 for acc
    },
    # ---- held-out loss and table metadata (issue 9) ----
    "validation_log": {  # one row per checkpoint of one model (train.py: SUITE/<model>/val_log.parquet)
        "val_loss": "float64",  # mean cross-entropy (nats/token) on the held-out items, never trained on
        "val_items": "int64",  # held-out items evaluated (the ones after the last trained step)
    },
}

META_KEY = b"pythia_suite"


def columns(schema: str) -> dict[str, str]:
    if schema not in SCHEMAS:
        raise KeyError(f"unknown table schema {schema!r}; known: {', '.join(SCHEMAS)}")
    return {**KEYS, **SCHEMAS[schema]}


@lru_cache(maxsize=1)  # one subprocess per process, not one per table written
def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def conform(df: pd.DataFrame, schema: str) -> pd.DataFrame:
    """`df` with exactly the schema's columns, in order and with its dtypes (raises if one is missing)."""
    cols = columns(schema)
    missing = [c for c in cols if c not in df.columns]
    extra = [c for c in df.columns if c not in cols]
    if missing or extra:
        raise ValueError(f"table {schema!r}: missing columns {missing}, unexpected columns {extra}")
    return df[list(cols)].astype(cols)


# config keys that hold paths (the commands' path options); other values (model names, tasks) stay as given
PATH_KEYS = frozenset({"manifest", "data", "out", "per_item", "per_sequence", "tokenizer", "winobias", "crows_pairs",
                       "lambada", "ground_truth", "include_path", "figures", "suite", "tables", "word_map"})


def _resolve(value):
    """A relative path that names a file, a folder or a dataset prefix (PREFIX.bin) as it is from
    here, made absolute; anything else as it is (lists and dicts element by element)."""
    if isinstance(value, (list, tuple)):
        return [_resolve(v) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, (str, os.PathLike)) and str(value) and not Path(value).is_absolute():
        p = Path(value)
        try:
            if p.exists() or p.with_name(p.name + ".bin").is_file():
                return str(p.resolve())
        except (OSError, ValueError):  # not a path at all (too long, a NUL): a plain string
            pass
    return str(value) if isinstance(value, os.PathLike) else value


def resolved_config(config: dict) -> dict:
    """The config as table metadata keeps it: paths (`PATH_KEYS`) absolute (a table read elsewhere still says
    which files made it) and, where it names training data (``data``: a prefix), the sha256 of that
    ``PREFIX.bin`` as measured (`fileio.stamped_sha256`: once per version of the file)."""
    from .fileio import stamped_sha256

    out = {k: _resolve(v) if k in PATH_KEYS else v for k, v in config.items()}
    data = out.get("data")
    if isinstance(data, str) and "data_sha256" not in out and Path(data + ".bin").is_file():
        out["data_sha256"] = stamped_sha256(Path(data + ".bin"))
    return out


def write_table(df: pd.DataFrame, path: str | os.PathLike, schema: str, config: dict | None = None,
                seeds: dict | None = None, notes: list[str] | None = None) -> Path:
    """Check `df` against `schema` and write it as Parquet with the metadata block (atomically).
    `notes` (`pythia_suite.notes`) say where a result is degenerate; ``[]`` when none is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = conform(df, schema)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {
        "schema": schema,
        "version": __version__,
        "git_commit": git_commit(),
        "seeds": seeds or {},
        "config": resolved_config(config or {}),
        "notes": list(notes or []),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta, default=str)})
    path = Path(path)
    with atomic_outputs(path) as (tmp,):
        pq.write_table(table, tmp)
    return path


def read_table_meta(path: str | os.PathLike) -> dict:
    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read table {path}: {e}") from None
    return json.loads(md[META_KEY]) if META_KEY in md else {}


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by `write_table`, with its metadata block (schema, version, git commit,
    seeds, config, notes) in ``df.attrs``; a user mistake (missing or foreign file) raises UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"table not found: {path}")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read table {path}: {str(e).splitlines()[0]}") from None
    df.attrs.update(read_table_meta(path))
    return df
