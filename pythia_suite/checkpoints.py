"""The checkpoint index of a suite (``checkpoints_manifest.json``) and the `Suite` API over it.

Manifest schema (``"schema": "pythia-suite/manifest/v1"``), JSON::

    {
      "schema": "pythia-suite/manifest/v1",
      "suite": "pythia",                       # name, carried into every table
      "tokenizer": "EleutherAI/pythia-70m" | "path/tokenizer.json" | null,
      "data": {"prefix": ..., "bin_sha256": ..., "idx_sha256": ..., "seq_len": 2048,
               "batch_size": 1024} | null,
      "models": [{
        "name": "pythia-70m-deduped",
        "params": 70426624, "non_embedding_params": 18915328,
        "config": {...},                       # Hugging Face GPTNeoXConfig fields
        "seeds": {"init": 1234, "data": null},
        "checkpoints": [{"step": 1000, "tokens_seen": 2097152000,
                         "location": "hf://EleutherAI/pythia-70m-deduped@step1000"
                                     | "pythia-70m/step1000",   # relative to the manifest
                         "sha256": "..." | null}],            # of model.safetensors, local only
        "intervention": {"parent": "micro-1m", "resume_step": 256, "start_step": 282,   # optional
                         "transform": {"name": "pronoun-swap", ...}}
      }]
    }

`step N` is the model after N optimizer steps: it has seen N batches. Local locations are
folders relative to the manifest's own folder and may not escape it.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .fileio import atomic_outputs, sha256_file, stamped_sha256

SCHEMA = "pythia-suite/manifest/v1"
HF_SCHEME = "hf://"
WEIGHTS = "model.safetensors"

# Pythia's schedule: step 0, powers of two to 512, then every 1000 to 143000 (154 checkpoints).
PYTHIA_FINAL_STEP = 143_000
PYTHIA_EVERY = 1000
PYTHIA_BATCH_SIZE = 1024
PYTHIA_SEQ_LEN = 2048


def checkpoint_steps(final_step: int, every: int) -> list[int]:
    """Pythia's schedule shape: 0, powers of two below `every`, multiples of `every`, and `final_step`.

    `checkpoint_steps(143000, 1000)` is Pythia's 154 steps.
    """
    if final_step < 0 or every < 1:
        raise UserError(f"bad checkpoint schedule: final step {final_step}, every {every}")
    steps = {0, final_step}
    p = 1
    while p < every and p <= final_step:
        steps.add(p)
        p *= 2
    steps.update(range(every, final_step + 1, every))
    return sorted(steps)


PYTHIA_STEPS = checkpoint_steps(PYTHIA_FINAL_STEP, PYTHIA_EVERY)


@dataclass(frozen=True)
class Checkpoint:
    model: str
    step: int
    tokens_seen: int
    location: str  # as written in the manifest
    path: Path | None  # resolved folder for local checkpoints, None for the hub
    sha256: str | None

    @property
    def is_remote(self) -> bool:
        return self.location.startswith(HF_SCHEME)

    @property
    def hf_repo_revision(self) -> tuple[str, str]:
        """("EleutherAI/pythia-70m", "step1000") for an hf:// location."""
        repo, _, rev = self.location[len(HF_SCHEME):].partition("@")
        return repo, rev or "main"


# ---- validation -------------------------------------------------------------------------------


def _fail(where: str, msg: str):
    raise UserError(f"manifest {where}: {msg}")


def _need(obj: dict, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        _fail(where, f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        _fail(where, f"field {key!r} must be {names}, got {type(value).__name__}")
    return value


def validate_manifest(m: dict, where: str = "") -> None:
    """Raise UserError naming the first field that does not fit the schema."""
    if not isinstance(m, dict):
        _fail(where, "is not a JSON object")
    if m.get("schema") != SCHEMA:
        _fail(where, f"schema is {m.get('schema')!r}, expected {SCHEMA!r}")
    _need(m, "suite", str, where)
    models = _need(m, "models", list, where)
    names = set()
    for i, model in enumerate(models):
        w = f"{where} models[{i}]"
        name = _need(model, "name", str, w)
        if name in names:
            _fail(w, f"duplicate model name {name!r}")
        names.add(name)
        for key in ("params", "non_embedding_params"):
            _need(model, key, int, w)
        _need(model, "config", dict, w)
        _need(model, "seeds", dict, w)
        steps = []
        for j, ck in enumerate(_need(model, "checkpoints", list, w)):
            wc = f"{w} checkpoints[{j}]"
            steps.append(_need(ck, "step", int, wc))
            _need(ck, "tokens_seen", int, wc)
            loc = _need(ck, "location", str, wc)
            if not loc.startswith(HF_SCHEME):
                p = Path(loc)
                if p.is_absolute() or ".." in p.parts:
                    _fail(wc, f"location {loc!r} escapes the manifest's folder; use a path inside it or hf://repo@revision")
            sha = ck.get("sha256")
            if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
                _fail(wc, "sha256 must be 64 hex characters or null")
        if steps != sorted(set(steps)):
            _fail(w, "checkpoint steps must be unique and increasing")
        if "intervention" in model:  # optional: a model continued from another with a data transform
            rec = _need(model, "intervention", dict, w)
            _need(rec, "parent", str, f"{w} intervention")
            for key in ("resume_step", "start_step"):
                _need(rec, key, int, f"{w} intervention")
            _need(rec, "transform", dict, f"{w} intervention")
    for i, model in enumerate(models):
        parent = (model.get("intervention") or {}).get("parent")
        if parent is not None and parent not in names:
            _fail(f"{where} models[{i}]", f"intervention parent {parent!r} is not a model of this manifest")


# ---- the Pythia index -------------------------------------------------------------------------


def pythia_manifest() -> dict:
    """The index of the real Pythia suite on the Hugging Face hub: every size, standard and
    deduped where both exist, 154 checkpoints each (revision ``step<N>``)."""
    from .sizes import PYTHIA_SIZES, config_for, non_embedding_params, total_params

    models = []
    for size, spec in PYTHIA_SIZES.items():
        for deduped in (False, True) if spec.deduped else (False,):
            name = f"pythia-{size}" + ("-deduped" if deduped else "")
            config = config_for(size)
            models.append({
                "name": name,
                "params": total_params(config),
                "non_embedding_params": non_embedding_params(config),
                "config": config.to_dict(),
                "seeds": {"init": 1234, "data": 1234},
                "checkpoints": [
                    {"step": s, "tokens_seen": s * PYTHIA_BATCH_SIZE * PYTHIA_SEQ_LEN,
                     "location": f"{HF_SCHEME}EleutherAI/{name}@step{s}", "sha256": None}
                    for s in PYTHIA_STEPS
                ],
            })
    return {
        "schema": SCHEMA,
        "suite": "pythia",
        "tokenizer": "EleutherAI/pythia-70m (20B tokenizer, vocab 50277)",
        "data": {
            "prefix": "pile-standard-pythia-preshuffled/document (deduped models: pile-deduped-pythia-preshuffled)",
            "bin_sha256": None,
            "idx_sha256": None,
            "seq_len": PYTHIA_SEQ_LEN,
            "batch_size": PYTHIA_BATCH_SIZE,
        },
        "models": models,
    }


def write_manifest(manifest: dict, path: str | os.PathLike) -> Path:
    validate_manifest(manifest, str(path))
    path = Path(path)
    with atomic_outputs(path) as (tmp,):
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


# ---- the Suite API ----------------------------------------------------------------------------


class Suite:
    """Models × checkpoints of one suite, wherever the weights live.

    >>> suite = Suite.load("checkpoints_manifest.json")
    >>> suite.steps("pythia-70m-deduped")[:5]
    [0, 1, 2, 4, 8]
    >>> model = suite.load_model("micro-1m", 512)
    """

    def __init__(self, manifest: dict, root: Path, source: str = "<manifest>"):
        validate_manifest(manifest, source)
        self.manifest = manifest
        self.root = root
        self.source = source
        self._models = {m["name"]: m for m in manifest["models"]}
        self._checked_data: Path | None = None  # the data prefix `check_data` accepted

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Suite":
        """Read a manifest (default: the real Pythia index at the repository root)."""
        path = Path(path) if path is not None else default_manifest_path()
        if path.is_dir():
            path = path / "checkpoints_manifest.json"
        if not path.is_file():
            raise UserError(f"manifest not found: {path}")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls(manifest, path.parent.resolve(), str(path))

    @property
    def name(self) -> str:
        return self.manifest["suite"]

    def without_interventions(self) -> "Suite":
        """The same suite minus the models continued with a data transform (see
        `pythia_suite.intervention`): the runs of the suite's own training order."""
        kept = [m for m in self.manifest["models"] if not m.get("intervention")]
        return Suite({**self.manifest, "models": kept}, self.root, self.source)

    def models(self) -> list[str]:
        return list(self._models)

    def model_name(self, model: str) -> str:
        """The suite's name for `model`, accepting the same forms everywhere: ``70m``,
        ``pythia-70m`` and ``EleutherAI/pythia-70m`` name the same model when the suite has one
        of them. Unknown names raise with near matches."""
        from .sizes import did_you_mean, name_forms  # the size table imports torch; a listing need not

        if model in self._models:
            return model
        matches = [m for m in self._models if name_forms(m) & name_forms(model)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise UserError(f"model {model!r} is ambiguous in this suite: {', '.join(matches)}")
        raise UserError(f"unknown model {model!r}{did_you_mean(model, self._models)}; this suite has: "
                        f"{', '.join(self._models)}")

    def model_info(self, model: str) -> dict:
        return self._models[self.model_name(model)]

    def params(self, model: str) -> int:
        return self.model_info(model)["params"]

    def steps(self, model: str) -> list[int]:
        return [c["step"] for c in self.model_info(model)["checkpoints"]]

    def resolve(self, model: str, step: int | None = None, *, index: int | None = None,
                nearest: bool = False) -> Checkpoint:
        """The checkpoint of `model` at `step` (or at position `index` in its schedule; -1 = last).

        With `nearest`, an unknown step resolves to the closest saved one (ties go to the earlier).
        """
        info = self.model_info(model)
        steps = self.steps(model)
        if (step is None) == (index is None):
            raise UserError("give exactly one of a step and an index")
        if not steps:
            raise UserError(f"{model} has no checkpoints yet in {self.source}")
        if index is not None:
            if not -len(steps) <= index < len(steps):
                raise UserError(f"checkpoint index {index} out of range for {model} ({len(steps)} checkpoints)")
            i = index % len(steps)
        else:
            i = bisect.bisect_left(steps, step)
            if i == len(steps) or steps[i] != step:
                near = sorted({steps[j] for j in (i - 1, i) if 0 <= j < len(steps)})
                if not nearest:
                    raise UserError(
                        f"unknown step {step} for {model}; nearest: {', '.join(map(str, near))} "
                        f"(steps run {steps[0]}..{steps[-1]}, {len(steps)} checkpoints)"
                    )
                i = steps.index(min(near, key=lambda s: (abs(s - step), s)))
        ck = info["checkpoints"][i]
        loc = ck["location"]
        path = None if loc.startswith(HF_SCHEME) else self.root / loc
        return Checkpoint(info["name"], ck["step"], ck["tokens_seen"], loc, path, ck.get("sha256"))

    def tokens_seen(self, model: str, step: int) -> int:
        return self.resolve(model, step).tokens_seen

    def checkpoints(self, model: str | None = None) -> list[Checkpoint]:
        names = [model] if model is not None else self.models()
        return [self.resolve(m, index=i) for m in names for i in range(len(self.steps(m)))]

    def frame(self, model: str | None = None):
        """Every checkpoint (of `model`, default all) as a DataFrame, one row per model x step:
        model, params, step, tokens_seen, location (as the manifest writes it), sha256, and
        parent (the model an intervention continues; "" for the others)."""
        import pandas as pd

        rows = [{"model": c.model, "params": self.params(c.model), "step": c.step, "tokens_seen": c.tokens_seen,
                 "location": c.location, "sha256": c.sha256,
                 "parent": (self.model_info(c.model).get("intervention") or {}).get("parent", "")}
                for c in self.checkpoints(model)]
        columns = ["model", "params", "step", "tokens_seen", "location", "sha256", "parent"]
        return pd.DataFrame(rows, columns=columns)

    def check_data(self, prefix: str | os.PathLike, force: bool = False) -> None:
        """Refuse a dataset this suite was not trained on, or one that changed since it was built:
        the items' length against the manifest's ``data.seq_len``, the sha256 of ``.bin`` and
        ``.idx`` as they are now (measured once, then stamped: `pythia_suite.data.integrity`)
        against the data sidecar's and the manifest's. Fields the manifest leaves null (the real
        Pythia index) are not checked."""
        from .data.integrity import check_dataset

        info = self.data_info
        expect = {k: info.get(k) for k in ("bin_sha256", "idx_sha256", "seq_len")}
        try:
            check_dataset(prefix, expect, owner=f"suite {self.name!r}", force=force)
        except UserError as e:
            raise UserError(f"{e}; pass the data it was trained on ({info.get('prefix')})"
                            if "is not the data of" in str(e) else str(e)) from None
        self._checked_data = Path(prefix).resolve()

    def load_model(self, model: str, step: int, *, nearest: bool = False, dtype=None, verify: bool = True):
        """The GPTNeoX at (model, step): from its local folder, or from the hub (needs
        huggingface_hub and a network).

        A local checkpoint's weights are checked against the manifest's sha256 first (`verify=False`
        skips that for speed), and weights holding NaN or inf are refused.
        """
        from .model import GPTNeoX

        ck = self.resolve(model, step, nearest=nearest)
        if ck.is_remote:
            folder = download_checkpoint(ck)
        else:
            if not ck.path.is_dir():
                raise UserError(f"checkpoint folder missing: {ck.path} ({model} step {ck.step})")
            folder = ck.path
            if verify and ck.sha256 is not None:
                check_weights_sha256(ck)
        net = GPTNeoX.from_pretrained(folder)
        bad = [name for name, p in net.state_dict().items() if not bool(p.isfinite().all())]
        if bad:
            raise UserError(f"{model} step {ck.step} ({folder}): weights hold NaN or inf ({', '.join(bad[:3])}"
                            f"{', ...' if len(bad) > 3 else ''}); this checkpoint is unusable")
        if dtype is not None:
            net = net.to(dtype)
        return net

    # ---- the data and tokenizer the suite was trained with ---------------------------------------

    @property
    def data_info(self) -> dict:
        return self.manifest.get("data") or {}

    @property
    def data_prefix(self) -> Path | None:
        """The training data's prefix (PREFIX.bin/.idx), resolved against the manifest's folder;
        None when the manifest names no local data (the real Pythia index)."""
        prefix = self.data_info.get("prefix")
        if not prefix or not self.data_info.get("bin_sha256"):
            return None
        path = Path(prefix)
        return path if path.is_absolute() else self.root / path

    @property
    def batch_size(self) -> int | None:
        """Sequences per optimizer step the suite was trained with."""
        return self.data_info.get("batch_size")

    @property
    def seq_len(self) -> int | None:
        """Context length (items hold seq_len + 1 tokens)."""
        return self.data_info.get("seq_len")

    @property
    def data_seed(self) -> int | None:
        return self.data_info.get("data_seed")

    @property
    def tokenizer_path(self) -> Path | None:
        """The suite's tokenizer.json (None when the manifest names none locally)."""
        tok = self.manifest.get("tokenizer")
        if not tok or tok.startswith("EleutherAI/"):
            return None
        path = Path(tok)
        return path if path.is_absolute() else self.root / path

    @property
    def tokenizer(self):
        """The suite's `tokenizers.Tokenizer`."""
        from .data.build import load_tokenizer

        if self.tokenizer_path is None:
            raise UserError(f"{self.source} names no local tokenizer ({self.manifest.get('tokenizer')!r})")
        return load_tokenizer(self.tokenizer_path)

    def order(self, data: str | os.PathLike | None = None):
        """The `TrainingOrder` this suite trained on, with its batch size, data seed and tokenizer.
        `data` overrides the manifest's prefix (for example the real Pythia files' location)."""
        from .data.order import TrainingOrder

        prefix = data if data is not None else self.data_prefix
        if prefix is None:
            raise UserError(f"{self.source} names no local training data; pass its prefix: suite.order(PREFIX)")
        if self._checked_data != Path(prefix).resolve():
            self.check_data(prefix)
        return TrainingOrder(prefix, batch_size=self.batch_size, seed=self.data_seed,
                             tokenizer=self.tokenizer_path)

    def __repr__(self) -> str:
        names = self.models()
        steps = sorted({s for m in names for s in self.steps(m)})
        shown = ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:3])}, ..., {names[-1]}"
        span = f"steps {steps[0]}..{steps[-1]}" if steps else "no checkpoints"
        data = f", data={str(self.data_prefix)!r}" if self.data_prefix is not None else ""
        return (f"Suite({self.name!r}, {len(names)} models [{shown}], {span}, batch_size={self.batch_size}, "
                f"seq_len={self.seq_len}{data})")


def check_weights_sha256(ck: Checkpoint) -> None:
    """Refuse a local checkpoint whose weights file does not hash to the manifest's sha256."""
    weights = ck.path / WEIGHTS
    if not weights.is_file():
        raise UserError(f"{ck.model} step {ck.step}: {weights} is missing")
    actual = stamped_sha256(weights)  # hashed once per version of the file
    if actual != ck.sha256:
        raise UserError(f"{ck.model} step {ck.step}: {weights} has sha256 {actual[:12]}..., the manifest records "
                        f"{ck.sha256[:12]}...; the file is damaged or was replaced (see `pythia-suite checkpoints verify`)")


# What a hub checkpoint folder needs: config, weights and the tokenizer files that tools such as
# lm-evaluation-harness expect beside them (pythia_suite.hf_files.TOKENIZER_FILES).
HUB_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def download_checkpoint(ck: Checkpoint) -> Path:
    """Fetch an hf:// checkpoint's config, weights and tokenizer files into the Hugging Face cache."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError("loading hub checkpoints needs huggingface_hub: pip install 'pythia-suite[hf]'") from None
    repo, revision = ck.hf_repo_revision
    try:
        return Path(snapshot_download(repo, revision=revision,
                                      allow_patterns=HUB_PATTERNS))
    except Exception as e:  # offline, missing revision, rate limit: all one line for the user
        raise UserError(f"cannot download {repo}@{revision} from the hub: {type(e).__name__}: {e}".splitlines()[0]) from None


def default_manifest_path() -> Path:
    """The repository's top-level index of the real Pythia suite."""
    return Path(__file__).resolve().parent.parent / "checkpoints_manifest.json"


# ---- verification -----------------------------------------------------------------------------


@dataclass
class VerifyResult:
    checked: int
    remote: int
    problems: list[str]


def verify_suite(suite: Suite) -> VerifyResult:
    """Recompute the sha256 of every local checkpoint and flag steps of one model whose weights
    are byte-identical (a known fault of some Pythia hub branches)."""
    problems: list[str] = []
    checked = remote = 0
    for model in suite.models():
        seen: dict[str, int] = {}
        for ck in suite.checkpoints(model):
            if ck.is_remote:
                remote += 1
                continue
            weights = ck.path / WEIGHTS
            if not weights.is_file():
                problems.append(f"{model} step {ck.step}: {weights} is missing")
                continue
            actual = sha256_file(weights)
            checked += 1
            if ck.sha256 is not None and actual != ck.sha256:
                problems.append(f"{model} step {ck.step}: sha256 {actual[:12]}... does not match the manifest's {ck.sha256[:12]}...")
            if actual in seen:
                problems.append(f"{model}: steps {seen[actual]} and {ck.step} have identical weights")
            seen.setdefault(actual, ck.step)
    return VerifyResult(checked, remote, problems)
