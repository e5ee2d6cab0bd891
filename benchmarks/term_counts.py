"""Term counts at every step: `pythia_suite.data.counts` against Pythia's method, on one token file.

    .venv/bin/python benchmarks/term_counts.py                      # >= 200 MB of uint16 tokens, 100 terms
    .venv/bin/python benchmarks/term_counts.py --mb 400 --peer-steps 2

The token file is made here, in a temporary folder, and deleted afterwards: a micro-Pile of
`--corpus-mb` (numbers planted as Pythia-style Q/A lines) built into 2049-token items with a
byte-level BPE, its items repeated until the file holds `--mb` megabytes, in steps of 1024 items
(Pythia's shape: 2,097,152 tokens per step).

Ours: `count_terms(..., definition="token")` for the terms 0..99 over every step, on all cores
(a process pool over chunks of steps). The peer is Pythia's `run_freq_count.py` as it runs: for
each step's batch, `batch_decode`, then per item a space in front, the lookahead window regex and
``\\d{1,5}`` inside each window, counted with a `Counter`. It is re-implemented here in the same
straight loop (transformers' GPTNeoXTokenizerFast decode = the `tokenizers` decoder plus
`clean_up_tokenization`), on one core as each of Pythia's pool workers, over `--peer-steps`
steps only (its time per token does not depend on how many steps it sees). Its counts must equal
those of our `--definition pythia` path on the same steps, exactly; the ratio compares ns per
token, peer (one core) against ours (all cores). Peak memory (max RSS of this process and of
the pool's workers) is printed after counting half the steps and all of them: flat means equal.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import string
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from pythia_suite.data.build import build, load_tokenizer
from pythia_suite.data.counts import count_terms, parse_terms
from pythia_suite.data.indexed import write_fixed_index
from pythia_suite.micropile import MicroPileConfig, generate

ITEM, BATCH = 2049, 1024
punct = re.escape(string.punctuation)
search_string_lazy = re.compile(f"(?=( (\\d){{1,5}} ((\\w|[{punct}])+\\s+){{1,3}}(\\d){{1,5}}))")  # Pythia's


def clean_up_tokenization(out_string: str) -> str:
    """transformers' `PreTrainedTokenizerBase.clean_up_tokenization`."""
    return (out_string.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


def pythia_count_batch(tokenizer, raw_lines: np.ndarray) -> Counter:
    """Pythia's `count_from_line`, the number keys only (its pair and time-unit keys are not terms here)."""
    frequency_count: Counter = Counter()
    lines = [clean_up_tokenization(t) for t in tokenizer.decode_batch(raw_lines.tolist(), skip_special_tokens=False)]
    for line in lines:
        line = " " + line
        matches = re.finditer(search_string_lazy, line)
        for window in [m.group(1) for m in matches]:
            numbers = sorted([int(i) for i in re.findall(r"\d{1,5}", window)])
            for num in numbers:
                frequency_count[str(num)] += 1
    return frequency_count


def make_data(folder: Path, mb: float, corpus_mb: float) -> tuple[Path, Path]:
    corpus = folder / "mp.jsonl"
    generate(corpus, replace(MicroPileConfig(), seed=3, target_bytes=int(corpus_mb * 1e6), canaries_per_repeat=0))
    small = build([corpus], folder / "small", seq_len=ITEM - 1, vocab_size=2048, seed=1, progress=False)
    items = np.fromfile(f"{small.prefix}.bin", dtype=np.uint16).reshape(-1, ITEM)
    n_steps = max(2, int(np.ceil(mb * 1e6 / (BATCH * ITEM * 2))))
    prefix = folder / "big"
    with open(f"{prefix}.bin", "wb") as f:
        for k in range(n_steps * BATCH // len(items) + 1):
            f.write(items[: min(len(items), n_steps * BATCH - k * len(items))].tobytes())
    write_fixed_index(f"{prefix}.idx", np.uint16, n_steps * BATCH, ITEM)
    return prefix, Path(f"{small.prefix}.tokenizer.json")


def peak_mb() -> tuple[float, float]:
    """Max RSS (MB) of this process and of its largest finished child (the pool's workers)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=210, help="size of the token file (default 210 MB)")
    ap.add_argument("--corpus-mb", type=float, default=2.0, help="micro-Pile text to tokenize (default 2 MB)")
    ap.add_argument("--peer-steps", type=int, default=1, help="steps the peer counts (default 1)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="term_counts_"))
    try:
        t = time.perf_counter()
        prefix, tok_path = make_data(tmp, args.mb, args.corpus_mb)
        tok = load_tokenizer(tok_path)
        n_tokens = os.path.getsize(f"{prefix}.bin") // 2
        n_steps = n_tokens // (BATCH * ITEM)
        print(f"data: {os.path.getsize(f'{prefix}.bin') / 1e6:.0f} MB, {n_tokens:,} tokens, {n_steps} steps of "
              f"{BATCH} x {ITEM} (made in {time.perf_counter() - t:.0f} s); {args.workers} workers")
        terms = parse_terms(["0..99"], tok)

        # ours, token rule: the first half of the steps (a time-boxed run), then every step, each in a
        # fresh pool; the workers' peak memory must not grow with the number of steps counted
        n_chunks = -(-n_steps // max(1, -(-n_steps // (4 * args.workers))))
        count_terms(prefix, terms, BATCH, tokenizer=tok_path, workers=args.workers, max_chunks=n_chunks // 2)
        half_self, half_child = peak_mb()
        t, cpu = time.perf_counter(), cpu_s()
        ours = count_terms(prefix, terms, BATCH, tokenizer=tok_path, workers=args.workers)
        ours_s, ours_cpu = time.perf_counter() - t, cpu_s() - cpu
        ours_ns = ours_s / n_tokens * 1e9
        self_mb, child_mb = peak_mb()
        print(f"ours (token rule, {n_steps} steps, 100 terms): {ours_s:.2f} s = {ours_ns:.2f} ns/token wall, "
              f"{ours_cpu / n_tokens * 1e9:.2f} ns/token of CPU time (all processes); "
              f"{int(ours.count.sum()):,} occurrences")
        print(f"peak RSS: this process {self_mb:.0f} MB, largest worker {child_mb:.0f} MB (after counting half the "
              f"steps: {half_self:.0f} MB and {half_child:.0f} MB)")

        # ours, Pythia's rule, and the peer, on the same first steps
        k = min(args.peer_steps, n_steps)
        t = time.perf_counter()
        ours_p = count_terms(prefix, terms, BATCH, definition="pythia", tokenizer=tok_path, workers=args.workers,
                             chunk_steps=1, max_chunks=k)
        ours_p_s = time.perf_counter() - t
        from pythia_suite.data.order import TrainingOrder

        order = TrainingOrder(prefix, batch_size=BATCH)
        t, cpu = time.perf_counter(), cpu_s()
        peer = np.zeros((100, k), np.int64)
        for step in range(k):
            c = pythia_count_batch(tok, order.batch(step))
            peer[:, step] = [c.get(str(x), 0) for x in range(100)]
        peer_s, peer_cpu = time.perf_counter() - t, cpu_s() - cpu
        peer_ns = peer_s / (k * BATCH * ITEM) * 1e9
        same = np.array_equal(peer, ours_p.count[:, :k])
        print(f"peer (Pythia's script: decode + regex, 1 core, {k} step(s)): {peer_s:.2f} s = {peer_ns:.1f} ns/token wall, "
              f"{peer_cpu / (k * BATCH * ITEM) * 1e9:.1f} ns/token of CPU time; "
              f"{int(peer.sum()):,} occurrences")
        print(f"ours --definition pythia on the same steps ({args.workers} workers): {ours_p_s:.2f} s = "
              f"{ours_p_s / (k * BATCH * ITEM) * 1e9:.1f} ns/token; counts identical to the peer: {same}")
        print(f"ratio, peer ns/token / ours (token rule) ns/token: {peer_ns / ours_ns:.0f}x wall (target >= 100x); "
              f"{peer_cpu / (k * BATCH * ITEM) / (ours_cpu / n_tokens):.0f}x in CPU time")

        assert same, "the peer and our pythia path disagree"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
