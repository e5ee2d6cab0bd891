"""Which checkpoints an analysis scores: chosen by model and step, and each checked present and
intact before anything is scored, so a missing or damaged checkpoint stops a grid at its start
instead of after hours (or, with ``--skip-missing``, is left out and recorded).

    from pythia_suite.selection import select
    chosen = select(suite, models=["micro-1m"], steps=[64, 128], skip_missing=True)
    chosen.suite        # the suite without the skipped checkpoints: pass it on to the analysis
    chosen.skipped      # [{"model", "step", "problem"}]: goes into the summary line and table metadata
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .checkpoints import WEIGHTS, Checkpoint, Suite
from .errors import UserError
from .fileio import stamped_sha256


@dataclass
class Selection:
    suite: Suite  # the selected suite, less the skipped checkpoints
    models: list[str]
    steps: list[int] | None  # the steps asked for that some model still has (None: every checkpoint)
    skipped: list[dict] = field(default_factory=list)  # {"model", "step", "problem"}

    def note(self) -> str | None:
        """One sentence for summary lines; None when nothing was skipped."""
        return skipped_note(self.skipped)


def skipped_note(skipped: list[dict]) -> str | None:
    """"skipped 2 missing or damaged checkpoint(s) (--skip-missing): m step 4, m step 8", or None."""
    if not skipped:
        return None
    shown = ", ".join(f"{s['model']} step {s['step']}" for s in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"skipped {len(skipped)} missing or damaged checkpoint(s) (--skip-missing): {shown}{more}"


def problem(ck: Checkpoint) -> str | None:
    """Why a checkpoint cannot be scored, or None. Local: the folder, config and weights must be
    there and the weights must hash to the manifest's sha256 (hashed once per version of the file,
    `fileio.stamped_sha256`). Hub: only offline, whether the Hugging Face cache holds it."""
    if ck.is_remote:
        return _remote_problem(ck)
    if not ck.path.is_dir():
        return f"folder {ck.path} is missing"
    for name in ("config.json", WEIGHTS):
        if not (ck.path / name).is_file():
            return f"{ck.path / name} is missing"
    if ck.sha256 and (actual := stamped_sha256(ck.path / WEIGHTS)) != ck.sha256:
        return f"{ck.path / WEIGHTS} has sha256 {actual[:12]}..., the manifest records {ck.sha256[:12]}... (damaged or replaced)"
    return None


def _remote_problem(ck: Checkpoint) -> str | None:
    if os.environ.get("HF_HUB_OFFLINE", "") in ("", "0"):
        return None  # fetched (and checked by the hub's own hashes) when it is loaded
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return "loading hub checkpoints needs huggingface_hub (pip install 'pythia-suite[hf]')"
    repo, revision = ck.hf_repo_revision
    if not isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str):
        return f"{repo}@{revision} is not in the Hugging Face cache and the hub is offline (HF_HUB_OFFLINE)"
    return None


def select(suite: Suite, models: list[str] | None = None, steps: list[int] | None = None,
           skip_missing: bool = False) -> Selection:
    """The checkpoints of `models` (default all) at `steps` (default every checkpoint; a step is
    kept for the models that have it, and one no model has is an error naming the nearest), each
    checked by `problem`. Any problem is an error listing them, unless `skip_missing`: then they
    are left out of the returned suite and recorded; nothing left is an error either way."""
    models = [suite.model_name(m) for m in models] if models else suite.models()
    for s in sorted(set(steps or [])):
        if not any(s in suite.steps(m) for m in models):
            suite.resolve(models[0], s)  # raises with the nearest steps
    chosen = [ck for m in models for ck in suite.checkpoints(m) if steps is None or ck.step in steps]
    bad = [(ck, why) for ck in chosen if (why := problem(ck)) is not None]
    listing = "; ".join(f"{ck.model} step {ck.step}: {why}" for ck, why in bad[:3]) + (
        f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
    if bad and len(bad) == len(chosen):
        raise UserError(f"none of the {len(chosen)} selected checkpoints can be scored: {listing}")
    if bad and not skip_missing:
        raise UserError(f"{len(bad)} of the {len(chosen)} selected checkpoints are missing or damaged: {listing}; "
                        "restore them (`pythia-suite checkpoints verify` lists every problem), or pass --skip-missing "
                        "to score the others")
    drop = {(ck.model, ck.step) for ck, _ in bad}
    manifest = {**suite.manifest, "models": [
        {**m, "checkpoints": [c for c in m["checkpoints"] if (m["name"], c["step"]) not in drop]}
        for m in suite.manifest["models"]]}
    kept = Suite(manifest, suite.root, suite.source)
    kept._checked_data = suite._checked_data
    alive = {ck.model for ck in chosen if (ck.model, ck.step) not in drop}
    models = [m for m in models if m in alive]
    left = None if steps is None else [s for s in sorted(set(steps)) if any(s in kept.steps(m) for m in models)]
    return Selection(kept, models, left, [{"model": ck.model, "step": ck.step, "problem": why} for ck, why in bad])
