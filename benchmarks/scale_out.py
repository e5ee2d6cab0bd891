"""Scale-out overheads on this machine: 2-rank DDP against one process, Dask memorization against serial.

    .venv/bin/python benchmarks/scale_out.py            # about 3-5 minutes on 2 CPU cores

1. Training: micro-200k, seq 128, batch 16, 48 steps, on data built in a temporary folder.
   One process with --micro-batch 8 (both cores) against `--nproc-per-node 2` (DDP, one thread and
   one micro-batch of 8 per rank): the same work on the same two cores; the ratio shows DDP's
   overhead (process start, gloo all-reduce, rank 0 writing) against how well one process's two
   threads use the cores on these small matrices. Also checks the two
   runs' final checkpoints agree (bit-identical only with equal thread counts: see README).
   Where DeepSpeed is installed, also `--parallel deepspeed` (ZeRO stage 1, the same split; its
   CPU communication extension compiled beforehand, on its first use, so not timed here).
2. Memorization: 2048 sequences at every checkpoint of one model (11 checkpoints), serially
   against `--workers 2` (a LocalCluster of 2 processes; tasks of (model, step, chunks), each
   loading its model once). The zarr stores must be identical.

Prints wall times, the ratios and the checks.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def run(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    import zarr

    from pythia_suite.micropile import MicroPileConfig, generate
    from pythia_suite.model import GPTNeoX

    exe = [sys.executable, "-m", "pythia_suite"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "corpus.jsonl", replace(MicroPileConfig(), target_bytes=3_000_000), tmp / "truth.json")
        run(exe + ["data", "build", str(tmp / "corpus.jsonl"), "--out", str(tmp / "data"), "--seq-len", "128",
                   "--vocab-size", "1024", "--quiet"])
        common = ["--data", str(tmp / "data"), "--sizes", "micro-200k", "--steps", "48", "--batch-size", "16",
                  "--checkpoint-every", "8", "--quiet"]
        t_single = run(exe + ["train", *common, "--out", str(tmp / "single"), "--micro-batch", "8"])
        t_ddp = run(exe + ["train", *common, "--out", str(tmp / "ddp"), "--nproc-per-node", "2"])
        a = GPTNeoX.from_pretrained(tmp / "single" / "micro-200k" / "step48").state_dict()
        b = GPTNeoX.from_pretrained(tmp / "ddp" / "micro-200k" / "step48").state_dict()
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        t_zero = zero_diff = None
        if importlib.util.find_spec("deepspeed"):
            zero = ["--nproc-per-node", "2", "--parallel", "deepspeed", "--zero-stage", "1"]
            run(exe + ["train", *common, "--out", str(tmp / "warm"), "--steps", "1", *zero])  # compiles its extension once
            t_zero = run(exe + ["train", *common, "--out", str(tmp / "zero"), *zero])
            c = GPTNeoX.from_pretrained(tmp / "zero" / "micro-200k" / "step48").state_dict()
            zero_diff = max(float((b[k] - c[k]).abs().max()) for k in b)
        print(f"training micro-200k, 48 steps of 16 x 128 tokens, {os.cpu_count()} CPUs")
        print(f"  one process (--micro-batch 8, {os.cpu_count()} threads): {t_single:7.1f} s")
        print(f"  DDP, 2 ranks x 1 thread (8 rows each):        {t_ddp:7.1f} s")
        print(f"  DDP / one process: {t_ddp / t_single:.2f}x the time for the same work "
              f"({'DDP slower: its overhead' if t_ddp > t_single else 'DDP not slower here'})")
        print(f"  final weights: max |difference| {diff:.2e} (thread counts differ, so not bit-identical here)")
        if t_zero is None:
            print("  DeepSpeed ZeRO: not installed (pythia-suite[deepspeed]), not measured")
        else:
            print(f"  DeepSpeed ZeRO-1, 2 ranks x 1 thread:          {t_zero:7.1f} s  ({t_zero / t_ddp:.2f}x DDP's time)")
            print(f"  ZeRO-1 vs DDP final weights: max |difference| {zero_diff:.2e}")

        mem = ["memorization", "--manifest", str(tmp / "single"), "--data", str(tmp / "data"), "--sequences", "0:2048",
               "--quiet"]
        t_serial = run(exe + [*mem, "--out", str(tmp / "serial.parquet")])
        t_dask = run(exe + [*mem, "--out", str(tmp / "dask.parquet"), "--workers", "2"])
        s, d = (zarr.open_group(tmp / f"{n}.zarr", mode="r") for n in ("serial", "dask"))
        same = all(np.array_equal(s[k][:], d[k][:]) for k in ("matched", "prefix", "done"))
        n_steps = s["matched"].shape[1]
        print(f"memorization, 2048 sequences x {n_steps} checkpoints of micro-200k (prompt 32 + 32)")
        print(f"  serial:                       {t_serial:7.1f} s")
        print(f"  --workers 2 (LocalCluster):   {t_dask:7.1f} s")
        print(f"  serial / workers: {t_serial / t_dask:.2f}x; stores identical: {same}")


if __name__ == "__main__":
    main()
