"""`TrainingOrder.batch(step)` against a raw numpy memmap slice of the same bytes.

    .venv/bin/python benchmarks/batch_read.py [--steps 96] [--dir /tmp/pythia-bench]

Builds a Pythia-shaped file (uint16, 2049 tokens per item, 1024 items per step), then copies
every step's batch both ways, interleaved, and prints throughput, the ratio ours/raw (target
>= 0.9) and the time of the last step against step 0 (target within 10%).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pythia_suite.data import TrainingOrder
from pythia_suite.data.indexed import write_fixed_index

ITEM, BATCH = 2049, 1024


def make_file(prefix: Path, steps: int) -> None:
    rng = np.random.default_rng(0)
    with open(f"{prefix}.bin", "wb") as f:
        for _ in range(steps):
            f.write(rng.integers(0, 50277, (BATCH, ITEM), dtype=np.uint16).tobytes())
    write_fixed_index(f"{prefix}.idx", np.uint16, steps * BATCH, ITEM)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        prefix = Path(d) / "document"
        make_file(prefix, args.steps)
        order = TrainingOrder(prefix)
        raw = np.memmap(f"{prefix}.bin", np.uint16, "r")
        per = BATCH * ITEM
        ours_t: dict[int, list[float]] = {s: [] for s in range(args.steps)}
        raw_t: dict[int, list[float]] = {s: [] for s in range(args.steps)}
        for s in range(args.steps):  # warm the page cache so both read from memory
            np.array(raw[s * per : (s + 1) * per])
        for _ in range(args.repeats):
            for s in range(args.steps):
                t = time.perf_counter()
                a = np.array(raw[s * per : (s + 1) * per]).reshape(BATCH, ITEM)
                raw_t[s].append(time.perf_counter() - t)
                t = time.perf_counter()
                b = np.array(order.batch(s))
                ours_t[s].append(time.perf_counter() - t)
                assert np.array_equal(a, b)
        mb = per * 2 / 1e6
        raw_med = statistics.median(min(v) for v in raw_t.values())
        ours_med = statistics.median(min(v) for v in ours_t.values())
        first, last = min(ours_t[0]), min(ours_t[args.steps - 1])
        print(f"file: {args.steps} steps x {BATCH} x {ITEM} uint16 = {args.steps * mb / 1e3:.2f} GB")
        print(f"raw memmap slice copy : {mb / raw_med:8.0f} MB/s ({raw_med * 1e3:.2f} ms/step)")
        print(f"TrainingOrder.batch   : {mb / ours_med:8.0f} MB/s ({ours_med * 1e3:.2f} ms/step)")
        print(f"ratio ours/raw throughput: {raw_med / ours_med:.3f}  (target >= 0.9)")
        print(f"last step / step 0 time  : {last / first:.3f}  (target within 1.10)")


if __name__ == "__main__":
    main()
