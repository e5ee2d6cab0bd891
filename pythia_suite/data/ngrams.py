"""Arbitrary token n-grams of a training order through tokengrams' suffix array (optional extra).

    from pythia_suite.data.ngrams import NgramIndex
    index = NgramIndex(suite.order())          # builds PREFIX.tokengrams.idx once (8 bytes a token)
    index.find(order.encode(" is 24 times"))   # sequence, offset, step of every occurrence
    index.counts_by_step([31, 2045])           # occurrences trained on at each step

`tokengrams` (``pip install 'pythia-suite[ngrams]'``) builds a memory-mapped suffix array over the
``.bin`` itself, so a query costs a binary search instead of a pass over the tokens: the way to ask
about n-grams of data too large for `TrainingOrder.find`. Positions are token offsets in the file;
they become item, offset and step as everywhere else. Only occurrences inside one item count (an
n-gram across two items was never contiguous in training), and only items some step trains on.
The index records the sha256 of the ``.bin`` it was built on (``PREFIX.tokengrams.json``) and is
refused against any other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..fileio import atomic_outputs, sha256_file
from .order import TrainingOrder
from .sidecar import read_sidecar


def _require_tokengrams():
    try:
        import tokengrams
    except ImportError:
        raise UserError("n-gram queries need tokengrams: pip install 'pythia-suite[ngrams]'") from None
    return tokengrams


class NgramIndex:
    """A tokengrams suffix array over the ``.bin`` of `order` (built beside it when missing)."""

    def __init__(self, order: TrainingOrder, path: str | os.PathLike | None = None):
        tokengrams = _require_tokengrams()
        ds = order.dataset
        if ds.dtype != np.uint16:
            raise UserError(f"{ds.bin_path} holds {np.dtype(ds.dtype).name} tokens; tokengrams' memory-mapped index "
                            "reads uint16 token files only")
        self.order = order
        self.path = Path(path) if path is not None else ds.prefix.with_name(ds.prefix.name + ".tokengrams.idx")
        record = self.path.with_suffix(".json")
        bin_sha = (read_sidecar(ds.prefix) or {}).get("bin_sha256") or sha256_file(ds.bin_path)
        if self.path.is_file():
            built_on = json.loads(record.read_text()).get("bin_sha256") if record.is_file() else None
            if built_on != bin_sha:
                raise UserError(f"{self.path} was built on another .bin (sha256 {str(built_on)[:12]}..., this one "
                                f"{bin_sha[:12]}...); delete it to rebuild")
            self.index = tokengrams.MemmapIndex(str(ds.bin_path), str(self.path), vocab=2**16)
        else:
            with atomic_outputs(self.path, record) as (tmp, tmp_record):
                tokengrams.MemmapIndex.build(str(ds.bin_path), str(tmp), vocab=2**16, verbose=False)
                tmp_record.write_text(json.dumps({"bin_sha256": bin_sha, "bin": ds.bin_path.name}) + "\n")
            self.index = tokengrams.MemmapIndex(str(ds.bin_path), str(self.path), vocab=2**16)

    def find(self, query: Sequence[int]) -> pd.DataFrame:
        """Every occurrence of the token sequence `query` inside a trained item, in training order:
        columns ``sequence`` (position in the order), ``offset`` (first token in the item), ``step``
        — the same rows `TrainingOrder.find` gives, from the suffix array."""
        q = [int(t) for t in np.asarray(query).ravel()]
        if not q:
            raise UserError("an n-gram query needs at least one token")
        order, L = self.order, self.order.item_len
        pos = np.array(sorted(self.index.positions(q)), dtype=np.int64)
        item, offset = pos // L, pos % L
        keep = offset + len(q) <= L  # wholly inside one item
        item, offset = item[keep], offset[keep]
        if order.permutation is not None:  # file item -> position in the reordered order
            where = np.empty_like(order.permutation)
            where[order.permutation] = np.arange(len(order.permutation))
            item = where[item]
        trained = item < order.num_steps * order.batch_size
        seq, offset = item[trained], offset[trained]
        by = np.lexsort((offset, seq))
        seq, offset = seq[by], offset[by]
        return pd.DataFrame({"sequence": seq, "offset": offset, "step": seq // order.batch_size})

    def counts_by_step(self, query: Sequence[int]) -> np.ndarray:
        """(num_steps,) occurrences of `query` in the batch of each step; the checkpoint `stepN`
        has seen ``counts_by_step(q)[:N].sum()``."""
        return np.bincount(self.find(query)["step"].to_numpy(), minlength=self.order.num_steps)
