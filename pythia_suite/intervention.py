"""Continue a trained model from one of its checkpoints with a data transform: Pythia's gender-bias
intervention (Biderman et al. 2023, section 5) and variations of it.

    pythia-suite train --resume-from suite/micro-1m@256 --transform pronoun-swap --name micro-1m-swap
    pythia-suite train --resume-from suite/micro-1m --from-fraction 0.07 --transform pronoun-swap --name micro-1m-swap7

The child model reads the parent's batches in the parent's order, and from its start step on
each batch goes through the transform (`pythia_suite.data.transforms.TokenMap`); everything else
is the parent's: weights, optimizer and RNG state from the checkpoint's trainer state, the lr
schedule to the parent's final step, the checkpoint schedule, the seeds. Its train log holds the
fingerprints of the batches it trained on (transformed from the start on).

``--from-fraction f`` starts the transform at ``total - round(f * total)`` (the last f of the
steps), moved to the parent's nearest checkpoint when one lies within 1% of the steps (so 0.07
and 0.21 of Pythia's 143000 give its 133000 and 113000). Otherwise the child resumes from the
parent's last checkpoint before the start and replays the parent's untransformed batches up to
it, bit-identically (a resume always is), and saves a checkpoint at the start.

Before anything is trained or written, the batches the child will train on (its start step to the
parent's last) are read in order up to the first one the transform changes; when none does (no
form of the map occurs as a whole word, e.g. a corpus without pronouns, or a tokenizer that cannot
write the map) the run is refused with one error line instead of training a copy of the parent.
When part of the map is several tokens of the data's tokenizer or cannot be written in it, one
``warning:`` line on stderr says how many forms (the run goes on).

The child goes into the parent's manifest as a new model: its checkpoints up to the one it
resumed from are the parent's own folders (referenced, not copied), later ones are its own, and
``intervention`` records parent, resume step, start step and the transform. A killed child run
resumes like any training run: rerun the same command.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from .checkpoints import WEIGHTS, Suite, checkpoint_steps, write_manifest
from .data.order import TrainingOrder
from .data.sidecar import read_sidecar
from .data.transforms import TokenMap, load_word_map
from .errors import UserError
from .fileio import sha256_file
from .model import GPTNeoXConfig
from .train import MANIFEST, STATE_JSON, STATE_WEIGHTS, Run, TrainSettings, train_model

TRANSFORMS = ("pronoun-swap", "word-map")
SNAP = 0.01  # a checkpoint within this share of the steps counts as the fraction's start


def parse_resume_from(spec: str) -> tuple[Path, str, int | None]:
    """"SUITE/MODEL@STEP" (or "SUITE/MODEL") -> (suite folder, model, step or None)."""
    path, at, step = spec.rpartition("@") if "@" in spec else (spec, "", "")
    p = Path(path.rstrip("/"))
    if not p.name or (at and not step.isdigit()):
        raise UserError(f"--resume-from must be SUITE/MODEL@STEP (e.g. suite/micro-1m@256), got {spec!r}")
    return p.parent, p.name, int(step) if at else None


def _has_state(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (WEIGHTS, STATE_JSON, STATE_WEIGHTS))


def choose_start(suite: Suite, model: str, step: int | None, from_fraction: float | None, total: int
                 ) -> tuple[int, int]:
    """(resume step: a parent checkpoint with trainer state, start step of the transform)."""
    if (step is None) == (from_fraction is None):
        raise UserError("give the start as SUITE/MODEL@STEP or with --from-fraction, exactly one of them")
    with_state = [c.step for c in suite.checkpoints(model) if c.path is not None and _has_state(c.path)]
    if step is not None:
        ck = suite.resolve(model, step)  # raises with the nearest steps
        if ck.path is None or not _has_state(ck.path):
            raise UserError(f"{model} step {step} has no trainer state ({STATE_JSON}, {STATE_WEIGHTS}) in "
                            f"{ck.path or ck.location}; resume from one of: {', '.join(map(str, with_state)) or 'none'}")
        start = step
    else:
        start = fraction_start(total, from_fraction, with_state)
    if start >= total:
        raise UserError(f"start step {start} leaves nothing to train: {model} ends at step {total}")
    earlier = [s for s in with_state if s <= start]
    if not earlier:
        raise UserError(f"{model} has no checkpoint with trainer state at or before step {start}")
    return max(earlier), start


def fraction_start(total: int, fraction: float, checkpoints: list[int]) -> int:
    """The first step of the last `fraction` of `total` steps, moved to the nearest of `checkpoints`
    within 1% of the steps: ``fraction_start(143000, 0.07, PYTHIA_STEPS) == 133000``."""
    if not 0 < fraction < 1:
        raise UserError(f"--from-fraction must be between 0 and 1 (e.g. 0.07), got {fraction}")
    start = total - round(fraction * total)
    near = [s for s in checkpoints if abs(s - start) <= SNAP * total]
    return min(near, key=lambda s: (abs(s - start), s)) if near else start


def _parent_state(suite: Suite, model: str) -> dict:
    """The trainer_state.json of the parent's newest local checkpoint (settings, total steps)."""
    for ck in reversed(suite.checkpoints(model)):
        if ck.path is not None and (ck.path / STATE_JSON).is_file():
            return json.loads((ck.path / STATE_JSON).read_text())
    raise UserError(f"{model} has no local checkpoint with trainer state: only models trained by `pythia-suite "
                    "train` can be continued")


def _settings(state: dict, name: str, device: str | None) -> TrainSettings:
    known = {f.name for f in fields(TrainSettings)}
    kw = {k: v for k, v in state["settings"].items() if k in known}
    kw["betas"] = tuple(kw.get("betas", (0.9, 0.95)))
    kw["sizes"] = [name]
    if device:
        kw["device"] = device
    return TrainSettings(**kw)


def suite_tokenizer(suite: Suite, data_meta: dict, tokenizer: str | os.PathLike | None = None) -> Path:
    """The tokenizer file of a local suite (or `tokenizer`), checked to be the one the data was made with."""
    path = Path(tokenizer) if tokenizer else None
    if path is None:
        t = suite.manifest.get("tokenizer")
        if not t:
            raise UserError(f"{suite.source} names no tokenizer; pass --tokenizer")
        path = Path(t) if Path(t).is_absolute() else suite.root / t
    if not path.is_file():
        raise UserError(f"tokenizer not found: {path}")
    want = data_meta.get("tokenizer_sha256")
    if want and sha256_file(path) != want:
        raise UserError(f"{path} is not the tokenizer the suite's data was made with (sha256 differs from the "
                        "data sidecar's tokenizer_sha256); a token map must use the data's own tokenizer")
    return path


def build_transform(tokenizer_path: Path, transform: str, word_map: str | os.PathLike | None,
                    eod_id: int | None = None) -> TokenMap:
    from .data.build import load_tokenizer

    tok = load_tokenizer(tokenizer_path)
    if transform == "pronoun-swap":
        if word_map is not None:
            raise UserError("--word-map goes with --transform word-map")
        return TokenMap.pronoun_swap(tok, eod_id=eod_id)
    if transform == "word-map":
        if word_map is None:
            raise UserError("--transform word-map needs --word-map FILE.json")
        return TokenMap.from_words(tok, load_word_map(word_map), name=f"word-map:{Path(word_map).name}", eod_id=eod_id)
    raise UserError(f"unknown transform {transform!r}; known: {', '.join(TRANSFORMS)}")


class NoOpTransform(UserError):
    """The transform changes no batch the child would train on (a UserError: exit 2 on the CLI)."""


def check_not_noop(order: TrainingOrder, tmap: TokenMap, start: int, total: int) -> int:
    """The first step in start..total-1 whose batch the transform changes; UserError if none does
    (the child would be a copy of its parent). Stops at the first such batch."""
    inside = 0
    for step in range(start, total):
        batch = order.batch(step)
        if tmap.replacements(batch):
            return step
        inside += sum(r["inside_word"] for r in tmap.count(batch) if r["role"] == "source")
    reason = (f"its forms occur only inside longer words ({inside} times), which are never replaced" if inside
              else f"none of its {len(tmap.rules)} forms that this tokenizer can write occurs in them")
    raise NoOpTransform(f"--transform {tmap.name} would change nothing: no batch of steps {start}..{total - 1} (the "
                    f"ones the child trains on) holds a mapped form as a whole word; {reason}; the child would equal "
                    "its parent, so nothing was trained (choose a map whose words occur in the data)")


def run_intervention(resume_from: str, name: str, transform: str = "pronoun-swap",
                     word_map: str | os.PathLike | None = None, from_fraction: float | None = None,
                     tokenizer: str | os.PathLike | None = None, device: str | None = None,
                     progress: bool = True) -> Path:
    """Train the child model `name` (see the module doc); return the manifest's path."""
    suite_dir, parent, step = parse_resume_from(resume_from)
    suite = Suite.load(suite_dir)
    info = suite.model_info(parent)
    state = _parent_state(suite, parent)
    total = int(state["total_steps"])
    resume, start = choose_start(suite, parent, step, from_fraction, total)
    data = dict(suite.manifest.get("data") or {})
    if not data.get("prefix"):
        raise UserError(f"{suite.source} records no training data prefix")
    prefix = suite.root / data["prefix"]
    suite.check_data(prefix)  # the files as they are now, against the sidecar and the manifest
    meta = read_sidecar(prefix) or {}
    tmap = build_transform(suite_tokenizer(suite, meta, tokenizer), transform, word_map, meta.get("eod_id"))
    record = {"parent": parent, "resume_step": resume, "start_step": start, "transform": tmap.describe()}
    existing = {m["name"]: m for m in suite.manifest["models"]}
    if name in existing and existing[name].get("intervention") != json.loads(json.dumps(record)):
        raise UserError(f"{suite.source} already has a model named {name!r}; choose another --name")

    s = _settings(state, name, device)
    order = TrainingOrder(prefix, batch_size=s.batch_size, seed=s.data_seed)
    config = GPTNeoXConfig.from_dict(info["config"])
    run = Run(name, config, info.get("peak_lr") or state["settings"].get("lr") or _peak_lr(parent))
    schedule = sorted(set(checkpoint_steps(total, s.checkpoint_every)) | {start})
    shared = [c for c in info["checkpoints"] if c["step"] <= resume]
    check_not_noop(order, tmap, start, total)  # before anything is written
    note = tmap.warning()
    if note:
        print(note, file=sys.stderr, flush=True)
    manifest_path = suite.root / MANIFEST

    def write() -> Path:
        m = json.loads(manifest_path.read_text())
        entry = {k: v for k, v in info.items() if k not in ("name", "checkpoints", "intervention")}
        entry |= {"name": name, "checkpoints": sorted(shared + run.checkpoints, key=lambda c: c["step"]),
                  "intervention": record}
        m["models"] = [x for x in m["models"] if x["name"] != name] + [entry]
        return write_manifest(m, manifest_path)

    def apply(step: int, batch):
        return tmap.apply(batch) if step >= start else batch

    ck = suite.resolve(parent, resume)
    recorded = {c["step"]: c.get("sha256") for c in existing.get(name, {}).get("checkpoints", [])}
    train_model(order, suite.root, run, total, schedule, s, progress, on_checkpoint=write,
                data_sha=data.get("bin_sha256"), recorded=recorded, transform=apply,
                start_from=(resume, ck.path, ck.sha256), extra_meta={"intervention": record})
    return write()


def _peak_lr(name: str) -> float:
    from .sizes import get_size

    return get_size(name).learning_rate


def transform_counts(suite: Suite, model: str, steps: list[int] | None = None,
                     tokenizer: str | os.PathLike | None = None):
    """Tidy count table of an intervention: per transformed step and form of the map (its text, one
    token or several), occurrences in the batch before and after the transform; for a map that
    changes item lengths also the tokens dropped at item ends and the end-of-text ids padded per
    step (schema ``bias_transform_counts``)."""
    import pandas as pd

    info = suite.model_info(model)
    rec = info.get("intervention")
    if not rec:
        raise UserError(f"{model} is not an intervention (no 'intervention' record in the manifest)")
    data = suite.manifest["data"]
    prefix = suite.root / data["prefix"]
    suite.check_data(prefix)
    meta = read_sidecar(prefix) or {}
    from .data.build import load_tokenizer

    tok = load_tokenizer(suite_tokenizer(suite, meta, tokenizer))
    t = rec["transform"]
    eod = t.get("eod_id", meta.get("eod_id"))
    tmap = (TokenMap.pronoun_swap(tok, eod_id=eod) if t["name"] == "pronoun-swap"
            else TokenMap.from_words(tok, t["words"], name=t["name"], eod_id=eod))
    order = TrainingOrder(prefix, batch_size=data["batch_size"], seed=data.get("data_seed"))
    total = max(suite.steps(model))
    steps = steps if steps is not None else list(range(rec["start_step"], total))
    rows = []
    for st in steps:
        batch = order.batch(st)
        after, stats = tmap.apply_counted(batch)
        pairs = list(zip(tmap.count(batch), tmap.count(after)))
        if tmap.changes_length:  # the length rule's two counts, as rows of their own
            pairs += [({"token": "", "role": "dropped", "whole_word": stats["dropped"], "inside_word": 0},
                       {"whole_word": 0, "inside_word": 0}),
                      ({"token": tok.id_to_token(tmap.eod_id) or "", "role": "padded", "whole_word": 0, "inside_word": 0},
                       {"whole_word": stats["padded"], "inside_word": 0})]
        for b, a in pairs:
            rows.append({"suite": suite.name, "model": model, "params": info["params"], "step": st,
                         "tokens_seen": order.tokens_seen(st), "token": b["token"], "role": b["role"],
                         "whole_word_before": b["whole_word"], "inside_word_before": b["inside_word"],
                         "whole_word_after": a["whole_word"], "inside_word_after": a["inside_word"]})
    return pd.DataFrame(rows)
