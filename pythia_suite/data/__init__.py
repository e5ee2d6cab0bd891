"""Data: the Megatron indexed format, corpus build, training order, shards."""

from .build import build
from .counts import Counts, count_terms, parse_terms
from .indexed import DTYPES, IndexedDataset, write_dataset
from .order import PYTHIA_BATCH_SIZE, TrainingOrder, batch_fingerprint
from .shards import shard, unshard, verify_shards
from .sidecar import read_sidecar, verify

__all__ = [
    "Counts",
    "DTYPES",
    "IndexedDataset",
    "PYTHIA_BATCH_SIZE",
    "TrainingOrder",
    "batch_fingerprint",
    "build",
    "count_terms",
    "parse_terms",
    "read_sidecar",
    "shard",
    "unshard",
    "verify_shards",
    "verify",
    "write_dataset",
]
