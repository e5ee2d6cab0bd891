"""`pythia-suite data build` against a plain per-document tokenize loop, on the same corpus.

    .venv/bin/python benchmarks/build_tokenize.py [--mb 200] [--dir /tmp]

The corpus is English-like text (Zipfian words, sentences, paragraphs as documents), written as
.txt. Both sides use the same byte-level BPE tokenizer.json (trained on the first few MB):

- peer: ``for doc in docs: ids = tokenizer.encode(doc).ids`` appended (with an end-of-document
  token) to a numpy array that grows by doubling;
- ours: the whole `build()` (tokenize on all cores, pack, PCG64 shuffle, write .bin/.idx/.json).

Prints tokens/s for each and the ratio (target >= 3x on 2 cores), then the peak RSS of `build()`
run in a fresh process on corpora of 1/4 and all of the size, to show it does not grow with the
corpus.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from pythia_suite.data.build import build, load_tokenizer, train_tokenizer
from pythia_suite.data.corpus import iter_documents


def write_corpus(path: Path, mb: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1 / np.arange(1, 27)
    vocab = ["".join(rng.choice(letters, rng.integers(1, 10), p=weights / weights.sum())) for _ in range(30000)]
    zipf = 1 / np.arange(1, len(vocab) + 1) ** 1.1
    zipf /= zipf.sum()
    target = int(mb * 1e6)
    written = 0
    with open(path, "w") as f:
        while written < target:
            words = rng.choice(len(vocab), 200_000, p=zipf)
            lengths = rng.integers(5, 25, 20_000)
            pos = 0
            out = []
            for n in lengths:
                s = " ".join(vocab[w] for w in words[pos : pos + n])
                pos += n
                out.append(s.capitalize() + ("." if n % 7 else ".\n\n"))
                if pos > len(words) - 30:
                    break
            text = " ".join(out) + "\n\n"
            f.write(text)
            written += len(text)


def peer(tokenizer, paths, eod: int) -> int:
    buf = np.empty(1 << 20, np.uint16)
    n = 0
    for doc in iter_documents(paths):
        ids = tokenizer.encode(doc).ids
        while n + len(ids) + 1 > len(buf):
            buf = np.concatenate([buf, np.empty_like(buf)])
        buf[n : n + len(ids)] = ids
        buf[n + len(ids)] = eod
        n += len(ids) + 1
    return n


def _build_child(corpus: Path, tok: Path, out: Path, conn) -> None:
    build([corpus], out, seq_len=2048, tokenizer=tok, seed=1)
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def peak_rss_mb(corpus: Path, tok: Path, out: Path) -> float:
    """Peak resident memory of `build()` alone, in a fresh process."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_build_child, args=(corpus, tok, out, send))
    p.start()
    peak = recv.recv()
    p.join()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        d = Path(d)
        corpus = d / "corpus.txt"
        write_corpus(corpus, args.mb)
        sample = d / "sample.txt"
        write_corpus(sample, 5, seed=1)
        tok = train_tokenizer(iter_documents([sample]), 8192)
        tok_path = d / "tokenizer.json"
        tok.save(str(tok_path))
        tok = load_tokenizer(tok_path)
        eod = tok.token_to_id("<|endoftext|>")
        size = corpus.stat().st_size / 1e6

        t = time.perf_counter()
        n_peer = peer(tok, [corpus], eod)
        t_peer = time.perf_counter() - t
        t = time.perf_counter()
        r = build([corpus], d / "ours", seq_len=2048, tokenizer=tok_path, seed=1)
        t_ours = time.perf_counter() - t
        assert r.n_tokens == n_peer, (r.n_tokens, n_peer)
        print(f"corpus: {size:.0f} MB, {r.n_documents} documents, {n_peer} tokens")
        print(f"peer (encode per doc, numpy append): {n_peer / t_peer / 1e6:6.2f} M tokens/s ({t_peer:.1f} s)")
        print(f"ours (data build, whole pipeline)  : {r.n_tokens / t_ours / 1e6:6.2f} M tokens/s ({t_ours:.1f} s)")
        print(f"ratio ours/peer: {t_peer / t_ours:.2f}x  (target >= 3x)")

        quarter = d / "quarter.txt"
        write_corpus(quarter, args.mb / 4)
        m_small = peak_rss_mb(quarter, tok_path, d / "q")
        m_full = peak_rss_mb(corpus, tok_path, d / "f")
        print(f"peak RSS of build: {m_small:.0f} MB on {args.mb / 4:.0f} MB, {m_full:.0f} MB on {args.mb:.0f} MB of text")


if __name__ == "__main__":
    main()
