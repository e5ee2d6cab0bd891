"""`pythia-suite demo`: the whole suite end to end on the built-in micro-Pile.

    pythia-suite demo --out demo_output                  # about 8 minutes on 2 CPU cores
    pythia-suite demo --out demo_gpu --preset gpu        # larger corpus and models, on a GPU

Steps, each skipped when its output is already there (a rerun resumes; `--fresh` starts over):

1. generate the micro-Pile and its ground truth       -> OUT/corpus/
2. train a byte-level BPE, build the preshuffled data -> OUT/data/
3. train the micro family on one training order       -> OUT/suite/ (checkpoints, manifest)
4. the report's sections (`registry.DEMO_SECTIONS`: training, each case study, the harness), each
   adding its tables and figures                       -> OUT/tables/, OUT/figures/
5. OUT/report.md: what was run, with what settings, each section, the figures

The demo only orchestrates: each section lives with its case study (`analyses/demo/`) and composes
that study's functions.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


from .errors import UserError, settings_mismatch


@dataclass(frozen=True)
class Preset:
    corpus_bytes: int
    vocab_size: int
    seq_len: int
    batch_size: int
    sizes: tuple[str, ...]
    checkpoint_every: int
    seed: int = 1234
    device: str = "cpu"
    canaries_per_repeat: int = 4
    steps: int | None = None  # optimizer steps; None: one pass over the data (less the held-out items)
    memorization_sample: int = 1024  # trained sequences (a seeded sample of the whole order) scored at every checkpoint
    # Canaries a small model can memorize in one pass: 30 pseudo-words of their own, each once, so
    # every word names the next (a chain; unpredictable without having seen it), ~85 tokens of which
    # prompt 32 + continuation 32 are scored; copies from 1 to 256, and 0-copy controls never written.
    canary_private_words: int = 30
    canary_words: int = 30
    canary_repeats: tuple[int, ...] = (0, 1, 4, 16, 64, 128, 256)
    val_items: int = 256  # held-out items after the last trained step (validation loss, memorization control)


PRESETS: dict[str, Preset] = {
    # inside the test suite: a minute or two
    "tiny": Preset(corpus_bytes=300_000, vocab_size=512, seq_len=64, batch_size=8,
                   sizes=("micro-50k", "micro-200k", "micro-500k", "micro-1m"), checkpoint_every=16,
                   canaries_per_repeat=1, steps=48, memorization_sample=256, canary_repeats=(0, 1, 4, 16, 64),
                   val_items=64),
    # the README's `make demo`: minutes on a laptop
    "default": Preset(corpus_bytes=2_800_000, vocab_size=2048, seq_len=128, batch_size=32,
                      sizes=("micro-50k", "micro-200k", "micro-500k", "micro-1m"), checkpoint_every=64,
                      memorization_sample=512),
    # a GPU: ten times the data, the largest micro size too
    "gpu": Preset(corpus_bytes=50_000_000, vocab_size=4096, seq_len=256, batch_size=64,
                  sizes=("micro-50k", "micro-200k", "micro-500k", "micro-1m", "micro-5m"), checkpoint_every=250,
                  device="cuda", memorization_sample=8192, val_items=1024),
}


@dataclass
class Section:
    """What one demo step contributes to the report."""

    title: str
    lines: list[str]
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # degenerate results (`pythia_suite.notes`), printed as such


@dataclass
class DemoContext:
    """Where everything of one demo run lives; handed to each report section (`registry.DEMO_SECTIONS`)."""

    out: Path
    preset_name: str
    preset: Preset
    progress: bool = True
    stages: int = 0  # stages of the run, for the "[i/n]" progress lines

    @property
    def corpus(self) -> Path:
        return self.out / "corpus" / "micropile.jsonl"

    @property
    def ground_truth_path(self) -> Path:
        return self.out / "corpus" / "micropile.ground_truth.json"

    @property
    def data(self) -> Path:
        return self.out / "data" / "micropile"

    @property
    def suite_dir(self) -> Path:
        return self.out / "suite"

    @property
    def manifest(self) -> Path:
        return self.suite_dir / "checkpoints_manifest.json"

    def table(self, name: str) -> Path:
        return self.out / "tables" / f"{name}.parquet"

    def figure(self, name: str) -> Path:
        return self.out / "figures" / f"{name}.png"

    def ground_truth(self) -> dict:
        from .micropile import load_ground_truth

        return load_ground_truth(self.ground_truth_path)

    def log(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)


def _check_settings(ctx: DemoContext) -> None:
    """A rerun into the same folder must use the same settings, or start over with --fresh."""
    record = ctx.out / "demo_settings.json"
    settings = {"preset": ctx.preset_name, **asdict(ctx.preset)}
    settings = json.loads(json.dumps(settings))
    if record.exists():
        old = json.loads(record.read_text())
        if old != settings:
            raise UserError(settings_mismatch(str(ctx.out), old, settings, "a demo run")
                            + "; pass --fresh to start over, or use another --out")
    else:
        record.write_text(json.dumps(settings, indent=1) + "\n")


def step_corpus(ctx: DemoContext) -> None:
    from .micropile import MicroPileConfig, generate

    if ctx.ground_truth_path.exists() and ctx.corpus.exists():
        return
    p = ctx.preset
    ctx.log(f"[1/{ctx.stages}] generating the micro-Pile ({p.corpus_bytes / 1e6:.1f} MB)")
    generate(ctx.corpus, replace(MicroPileConfig(), seed=p.seed, target_bytes=p.corpus_bytes,
                                 canaries_per_repeat=p.canaries_per_repeat, canary_words=p.canary_words,
                                 canary_private_words=p.canary_private_words, canary_repeats=p.canary_repeats,
                                 canary_pool=p.canary_private_words * len(p.canary_repeats) * p.canaries_per_repeat),
             ctx.ground_truth_path)


def step_data(ctx: DemoContext) -> None:
    from .data import build

    if ctx.data.with_name(ctx.data.name + ".json").exists():
        return
    from .data.build import train_tokenizer
    from .fileio import atomic_outputs
    from .micropile import documents_without_canaries

    p = ctx.preset
    ctx.log(f"[2/{ctx.stages}] building the tokenizer (vocab {p.vocab_size}) and the preshuffled data (seq_len {p.seq_len})")
    # The BPE learns from every document but the canaries: a canary copied 256 times would
    # otherwise get tokens of its own words and be easier to memorize for that reason alone,
    # so every canary is cut into the same kind of pieces whatever its copy count.
    tokenizer = train_tokenizer(documents_without_canaries(ctx.corpus, ctx.ground_truth()), p.vocab_size)
    tok_path = ctx.data.with_name(ctx.data.name + ".tokenizer.json")
    tok_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs(tok_path) as (tmp,):
        tokenizer.save(str(tmp))
    build([ctx.corpus], ctx.data, seq_len=p.seq_len, tokenizer=tok_path, seed=p.seed, progress=ctx.progress)


def step_train(ctx: DemoContext) -> None:
    from .train import TrainSettings, train

    p = ctx.preset
    ctx.log(f"[3/{ctx.stages}] training {', '.join(p.sizes)} (batch {p.batch_size} x {p.seq_len} tokens)")
    settings = TrainSettings(sizes=list(p.sizes), steps=p.steps, batch_size=p.batch_size, seed=p.seed,
                             checkpoint_every=p.checkpoint_every, device=p.device, suite="micro-pile",
                             val_items=p.val_items)
    train(ctx.data, ctx.suite_dir, settings, progress=ctx.progress, on_model_done=lambda m: ctx.log(f"  {m.line()}"))


def step_sections(ctx: DemoContext, first: int, total: int) -> list[Section]:
    """Every registered report section (`registry.demo_sections()`), in order, as stages first..total-1."""
    from .registry import demo_sections, resolve

    sections = []
    for i, entry in enumerate(demo_sections(), start=first):
        ctx.log(f"[{i}/{total}] {entry.name}")
        t = time.perf_counter()
        section = resolve(entry.section)(ctx)
        if section is not None:
            section.lines.append(f"\n_{entry.name}: {time.perf_counter() - t:.0f} s._")
            sections.append(section)
    return sections


def write_report(ctx: DemoContext, sections: list[Section], wall_s: float) -> Path:
    from . import __version__
    from .fileio import atomic_outputs
    from .tables import git_commit

    from .checkpoints import Suite

    truth = ctx.ground_truth()
    suite = Suite.load(ctx.manifest)
    p = ctx.preset
    lines = [
        "# pythia-suite demo report", "",
        f"pythia-suite {__version__} (git {git_commit() or 'unknown'}), preset `{ctx.preset_name}`, "
        f"{wall_s:.0f} s for this invocation.", "",
        "## What was run", "",
        f"- corpus: the micro-Pile, {truth['corpus']['n_bytes'] / 1e6:.1f} MB, "
        f"{truth['corpus']['n_documents']:,} documents, seed {p.seed} (`corpus/`, ground truth beside it)",
        f"- data: byte-level BPE of {p.vocab_size} tokens, items of {p.seq_len}+1 tokens, PCG64 shuffle seed {p.seed} (`data/`)",
        "- models: " + "; ".join(f"{m} ({suite.model_info(m)['non_embedding_params']:,} non-embedding, "
                                 f"{suite.params(m):,} total parameters)" for m in p.sizes)
        + f". Size names give the approximate non-embedding count; every `params` below is the total. Batch {p.batch_size}, "
        f"{'one pass over the data' if p.steps is None else f'{p.steps} steps'}, checkpoints at 0, "
        f"powers of two and every {p.checkpoint_every} steps (`suite/checkpoints_manifest.json`)",
        f"- device: {p.device}", "",
    ]
    for s in sections:
        lines += [f"## {s.title}", "", *s.lines, ""]
        if s.notes:
            from .notes import collapse

            lines += ["Not findings (degenerate results, also in the tables' metadata `notes`):", "",
                      *[f"- {n}" for n in collapse(s.notes)], ""]
        lines += [f"![{f.stem}]({f.relative_to(ctx.out)})" for f in s.figures]
        if s.tables:
            lines += ["", "Tables: " + ", ".join(f"`{t.relative_to(ctx.out)}`" for t in s.tables)]
        lines.append("")
    from .notebooks import report_lines

    lines += report_lines(ctx.out)
    written = sorted((ctx.out / "tables").glob("*.parquet")) + sorted((ctx.out / "tables").glob("*.zarr"))
    lines += ["## Every table this demo wrote", "",
              *[f"- `{t.relative_to(ctx.out)}` ("
                + (f"schema `{_schema(t)}`" if t.suffix == ".parquet" else describe_store(t)) + ")" for t in written], ""]
    path = ctx.out / "report.md"
    with atomic_outputs(path) as (tmp,):
        tmp.write_text("\n".join(lines))
    return path


# what the arrays of a results store hold, by the names its writers give them
STORE_LAYOUTS = {"matched": "memorization scores per model x step x sequence",
                 "count": "term counts per term x training step"}


def describe_store(path: Path) -> str:
    """A zarr store as it is: what its arrays hold and their shapes."""
    import zarr

    group = zarr.open_group(path, mode="r")
    arrays = {name: a.shape for name, a in group.arrays() if name != "done"}
    kinds = [STORE_LAYOUTS[n] for n in arrays if n in STORE_LAYOUTS]
    shapes = ", ".join(f"{n} {' x '.join(map(str, shape))}" for n, shape in arrays.items())
    return f"zarr store: {'; '.join(kinds) or 'arrays'} ({shapes})"


def _schema(path: Path) -> str:
    from .tables import read_table_meta

    return read_table_meta(path).get("schema", "?")


def run_demo(out: str | Path = "demo_output", preset: str = "default", fresh: bool = False,
             progress: bool = True) -> Path:
    """Run (or resume) the demo into `out`; return the path of report.md."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    from .registry import demo_sections

    # corpus, data, training, each report section, the report
    ctx = DemoContext(out, preset, PRESETS[preset], progress, stages=3 + len(demo_sections()) + 1)
    if ctx.preset.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"preset {preset!r} needs a CUDA GPU and torch sees none; use --preset default")
    _check_settings(ctx)
    t = time.perf_counter()
    step_corpus(ctx)
    step_data(ctx)
    step_train(ctx)
    sections = step_sections(ctx, first=4, total=ctx.stages)
    ctx.log(f"[{ctx.stages}/{ctx.stages}] writing the report")
    report = write_report(ctx, sections, time.perf_counter() - t)
    print(f"\ndemo finished in {time.perf_counter() - t:.0f} s: {report}")
    for s in sections:
        print(f"  {s.title}: {len(s.figures)} figures, {len(s.tables)} tables")
    return report
