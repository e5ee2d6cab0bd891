"""Running work on existing engines, in one place: Dask distributed for analyses.

    with dask_client(workers=2) as client:          # a LocalCluster on 127.0.0.1, one thread per process
        run_tasks(client, score_group, tasks)
    with dask_client(scheduler="tcp://head:8786"):   # an existing cluster (e.g. dask-jobqueue's SLURMCluster)
        ...

Tasks must be idempotent: a task whose worker dies is run again elsewhere (Dask retries it), and
a rerun of the whole job skips what is done, so every task writes only its own disjoint outputs
and marks them done last. The serial path of each analysis stays the reference and the default.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from .errors import UserError

SCHEDULER_TIMEOUT_S = 30.0


def _distributed():
    try:
        import distributed
    except ImportError:
        raise UserError("--workers / --scheduler need Dask distributed: pip install 'pythia-suite[dask]'") from None
    return distributed


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                timeout: float = SCHEDULER_TIMEOUT_S) -> Iterator[object]:
    """A `distributed.Client`: on a LocalCluster of `workers` processes bound to 127.0.0.1 (one
    thread each, no dashboard), or connected to the scheduler at `scheduler`."""
    if (workers is None) == (scheduler is None):
        raise UserError("give one of --workers N and --scheduler ADDRESS")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: give at least 1 worker process (or leave it out to run serially)")
    distributed = _distributed()
    cluster = None
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"--scheduler {scheduler}: no Dask scheduler answered within {timeout:g} s "
                            f"({type(e).__name__}); start one or check the address") from None
    else:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def maybe_client(workers: int | None = None, scheduler: str | None = None,
                 timeout: float = SCHEDULER_TIMEOUT_S) -> Iterator[object | None]:
    """`dask_client` when `workers` or `scheduler` is given, else None: the serial path."""
    if workers is None and scheduler is None:
        yield None
    else:
        with dask_client(workers, scheduler, timeout) as client:
            yield client


def run_tasks(client, fn: Callable, tasks: Sequence, progress: Callable[[object], None] | None = None,
              retries: int = 2) -> list:
    """Run fn(task) for every task on the cluster; results in task order. A task that raises is
    retried `retries` times (one whose worker died is rescheduled by Dask itself); the first
    error that remains is raised here."""
    distributed = _distributed()
    futures = client.map(fn, list(tasks), pure=False, retries=retries)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    try:
        for future in distributed.as_completed(futures):
            results[index[future.key]] = future.result()
            if progress is not None:
                progress(results[index[future.key]])
    except BaseException:
        client.cancel(futures)
        raise
    return results
