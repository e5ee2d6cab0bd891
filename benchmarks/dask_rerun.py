"""A rerun after a killed Dask driver against a clean run (issue: rerun 45 s vs clean 24 s).

    .venv/bin/python benchmarks/dask_rerun.py --suite SUITE --data PREFIX [--sample 2048 --workers 2]

1. clean: `pythia-suite memorization --workers N` into a fresh store, timed;
2. killed: the same command into another store, SIGKILL of the driver at half the clean time
   (its LocalCluster workers are its children), then the same command again, timed;
3. prints both times, the ratio rerun / clean (target <= 1) and whether the two stores agree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(args, out: Path) -> list[str]:
    return [sys.executable, "-m", "pythia_suite", "memorization", "--manifest", args.suite, "--data", args.data,
            "--sample", str(args.sample), "--workers", str(args.workers), "--out", str(out), "--quiet"]


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--suite", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--sample", type=int, default=2048)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    import numpy as np
    import zarr

    work = Path(tempfile.mkdtemp(prefix="dask_rerun_"))
    try:
        clean = timed(command(args, work / "clean.parquet"))
        proc = subprocess.Popen(command(args, work / "killed.parquet"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(clean / 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = zarr.open_group(work / "killed.zarr", mode="r")["done"][:]
        rerun = timed(command(args, work / "killed.parquet"))
        same = all(np.array_equal(zarr.open_group(work / f"{n}.zarr", mode="r")[a][:],
                                  zarr.open_group(work / "clean.zarr", mode="r")[a][:])
                   for n in ("killed",) for a in ("matched", "prefix"))
        print(f"clean run              : {clean:6.1f} s")
        print(f"killed at {clean / 2:5.1f} s      : {int(done.sum())} of {done.size} chunks done")
        print(f"rerun after the kill   : {rerun:6.1f} s")
        print(f"ratio rerun / clean    : {rerun / clean:.2f}  (target <= 1)")
        print(f"stores equal           : {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
