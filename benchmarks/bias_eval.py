"""Log-likelihood scoring, ours against lm-evaluation-harness's HFLM method on transformers, and the
cost of the pronoun-swap transform in a training step.

    .venv/bin/python benchmarks/bias_eval.py                      # pythia-70m shape, random weights
    .venv/bin/python benchmarks/bias_eval.py --size 14m --items 128

The peer is HFLM's ``_loglikelihood_tokens`` with ``batch_size=32, logits_cache=False`` written
out on transformers' GPTNeoXForCausalLM (requests sorted longest first, right-padded batches of
32, log-softmax over every position in float32, then the continuation slice, sum and argmax
check); lm-eval itself is not a dependency. Both sides get the same weights and the same token
requests: CrowS-style whole sentences after end-of-text (8-30 tokens) and LAMBADA-style items
(a context of 60-120 tokens and a last word of 1-3 tokens). No model or data is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def requests(n: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    crows = [([0], rng.integers(2, vocab, rng.integers(8, 31)).tolist()) for _ in range(2 * n)]
    lambada = [(rng.integers(2, vocab, rng.integers(60, 121)).tolist(), rng.integers(2, vocab, rng.integers(1, 4)).tolist())
               for _ in range(n)]
    return crows, lambada


@torch.inference_mode()
def hflm_method(model, reqs, batch_size: int = 32, max_len: int = 2048):
    """HFLM's loglikelihood on token requests, as the harness computes it (no logits cache)."""
    order = sorted(range(len(reqs)), key=lambda i: -(len(reqs[i][0]) + len(reqs[i][1])))
    out = [None] * len(reqs)
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        inps = [torch.tensor((reqs[i][0] + reqs[i][1])[-(max_len + 1):][:-1]) for i in idx]
        width = max(len(x) for x in inps)
        batch = torch.stack([F.pad(x, (0, width - len(x))) for x in inps])
        logp = F.log_softmax(model(batch).logits, dim=-1, dtype=torch.float32)  # (B, T, vocab)
        for row, i, x in zip(logp, idx, inps):
            cont = torch.tensor(reqs[i][1])
            sl = row[len(x) - len(cont) : len(x)]  # the continuation positions, padding dropped
            out[i] = (float(sl.gather(1, cont[:, None]).sum()), bool((sl.argmax(-1) == cont).all()))
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def bench_scoring(args) -> None:
    import transformers

    from pythia_suite.eval.loglik import loglikelihood
    from pythia_suite.model import GPTNeoX
    from pythia_suite.sizes import config_for

    torch.manual_seed(0)
    config = config_for(args.size)
    ours = GPTNeoX(config).eval()
    theirs = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig.from_dict(config.to_dict())).eval()
    theirs.load_state_dict({("lm_head.weight" if k == "embed_out.weight" else k): v for k, v in ours.state_dict().items()})
    crows, lambada = requests(args.items, config.vocab_size)
    print(f"log-likelihood scoring: pythia-{args.size} shape (layers {config.num_hidden_layers}, d {config.hidden_size}, "
          f"vocab {config.vocab_size}), random weights, float32, CPU, {torch.get_num_threads()} threads; "
          f"torch {torch.__version__}, transformers {transformers.__version__}; batch 32, median of {args.repeats}")
    for name, reqs in (("CrowS-style", crows), ("LAMBADA-style", lambada)):
        t_ours, res = timed(lambda: loglikelihood(ours, reqs, batch_size=32), args.repeats)
        t_theirs, ref = timed(lambda: hflm_method(theirs, reqs), args.repeats)
        diff = np.abs(res.logprob - np.array([r[0] for r in ref])).max()
        same_greedy = int((res.is_greedy == np.array([r[1] for r in ref])).sum())
        print(f"{name:14s} {len(reqs):4d} requests: ours {t_ours:7.3f} s, HFLM method {t_theirs:7.3f} s, "
              f"ratio {t_theirs / t_ours:5.2f}x; max |logprob diff| {diff:.1e}; is_greedy equal {same_greedy}/{len(reqs)}")


def bench_transform(args) -> None:
    from pythia_suite.data.build import train_tokenizer
    from pythia_suite.data.transforms import TokenMap
    from pythia_suite.model import GPTNeoX
    from pythia_suite.sizes import config_for

    docs = [f"The nurse said that {p} would finish the report soon." for p in ("he", "she", "his", "him", "her")] * 40
    tok = train_tokenizer(iter(docs), 2048)
    swap = TokenMap.pronoun_swap(tok)
    vocab = tok.get_vocab_size()
    rng = np.random.default_rng(0)
    batch = rng.integers(2, vocab, (32, 129)).astype(np.uint16)
    he = tok.encode(" he", add_special_tokens=False).ids[0]
    batch[rng.random(batch.shape) < 0.01] = he  # ~1% pronouns: far more than text has
    torch.manual_seed(0)
    model = GPTNeoX(config_for("micro-1m", vocab_size=2048, max_position_embeddings=128))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)

    def step(transform: bool):
        b = swap.apply(batch) if transform else batch
        x = torch.from_numpy(b.astype(np.int64))
        opt.zero_grad(set_to_none=True)
        logits = model(x[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1)).backward()
        opt.step()

    for _ in range(3):
        step(False)
    plain, with_t = [], []
    for _ in range(args.repeats * 4):  # interleaved, so drift hits both alike
        plain.append(timed(lambda: step(False), 1)[0])
        with_t.append(timed(lambda: step(True), 1)[0])
    apply_s = timed(lambda: swap.apply(batch), 50)[0]
    p, w = statistics.median(plain), statistics.median(with_t)
    print(f"transform: micro-1m training step, batch 32 x 128 tokens: {p * 1e3:.1f} ms without, {w * 1e3:.1f} ms with "
          f"the pronoun swap ({(w / p - 1) * 100:+.1f}%); TokenMap.apply alone {apply_s * 1e3:.3f} ms "
          f"({apply_s / p * 100:.2f}% of a step; target < 5%)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="70m", help="a Pythia size of pythia_suite.sizes (default 70m)")
    p.add_argument("--items", type=int, default=64, help="LAMBADA-style items; CrowS-style sentences are twice that")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    bench_scoring(args)
    bench_transform(args)


if __name__ == "__main__":
    main()
