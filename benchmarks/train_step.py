"""Training step time: `pythia_suite.model.GPTNeoX` against transformers' `GPTNeoXForCausalLM`.

    .venv/bin/python benchmarks/train_step.py                          # CPU, every micro size
    .venv/bin/python benchmarks/train_step.py --sizes micro-1m micro-5m --repeats 20
    .venv/bin/python benchmarks/train_step.py --device cuda --size 160m [--peak-tflops 989]

Both models get the same config, the same weights (ours copied into theirs), the same batch and
the same optimizer as `pythia-suite train` (AdamW betas 0.9/0.95, eps 1e-8, weight decay 0.01 on
matrices only, gradient clipping at 1.0). A step is zero_grad, forward, float32 cross-entropy on
the shifted tokens, backward, clip, optimizer step. Steps of the two models alternate (which goes
first alternates too) after a few warm-up steps; each time is the median over the repeats.
transformers runs with `attn_implementation="sdpa"` (its fastest path on a CPU) and
`use_cache=False` (no KV cache is needed to train).

CPU (default): float32, seq 128, batch 16, vocab 512, torch threads = the cores this process may
use. Prints ours ms/step, HF ms/step, ratio = HF time / ours time (target >= 1.0) and ours
tokens/s. The first step's losses of the two models are compared as a sanity check.

CUDA (`--device cuda --size 160m`): the pythia-160m shape (vocab 50304, seq 2048, batch 8 by
default), bf16 autocast with float32 weights, and MFU = 6 * N * tokens/s / peak FLOP/s, where N is
the parameters that take part in matrix products (all but the `embed_in` lookup) and the peak is
`--peak-tflops` (default 989: H100/H200 SXM bf16 dense).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from pythia_suite.model import GPTNeoX
from pythia_suite.sizes import MICRO_SIZES, config_for, total_params
from pythia_suite.train import TrainSettings, optimizer_for


def hf_twin(ours: GPTNeoX):
    """transformers' GPTNeoXForCausalLM with our config and a copy of our weights (sdpa attention)."""
    import transformers

    hf_config = transformers.GPTNeoXConfig.from_dict(ours.config.to_dict())
    theirs = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa")
    assert isinstance(theirs, transformers.GPTNeoXForCausalLM) and theirs.dtype == torch.float32
    # transformers 5 names the head lm_head in memory (embed_out in files); 4.x says embed_out
    head = "lm_head.weight" if "lm_head.weight" in theirs.state_dict() else "embed_out.weight"
    state = {(head if k == "embed_out.weight" else k): v.clone() for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs


def make_step(model, opt, x, y, hf: bool, autocast_dtype):
    device_type = x.device.type

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = model(input_ids=x, use_cache=False).logits if hf else model(x)
        loss = F.cross_entropy(out.reshape(-1, out.size(-1)).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    return step


def timed(step, device: torch.device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    loss = step()
    loss = loss.item()  # waits for the step on any device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t, loss


def bench(size: str, args, device: torch.device) -> dict:
    config = config_for(size, vocab_size=args.vocab, max_position_embeddings=args.seq_len)
    torch.manual_seed(0)
    ours = GPTNeoX(config).to(device).train()
    theirs = hf_twin(ours).to(device).train()
    settings = TrainSettings(sizes=[size])
    peak_lr = 1e-4  # small, so that hundreds of repeats stay finite; the lr does not change the cost
    opt_ours, opt_theirs = optimizer_for(ours, settings, peak_lr), optimizer_for(theirs, settings, peak_lr)
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), generator=g).to(device)
    x, y = batch[:, :-1], batch[:, 1:]
    amp = torch.bfloat16 if device.type == "cuda" else None
    steps = {"ours": make_step(ours, opt_ours, x, y, False, amp), "hf": make_step(theirs, opt_theirs, x, y, True, amp)}

    first = {name: timed(fn, device)[1] for name, fn in steps.items()}  # same weights: same first loss
    for _ in range(args.warmup - 1):
        for fn in steps.values():
            timed(fn, device)
    times: dict[str, list[float]] = {"ours": [], "hf": []}
    for r in range(args.repeats):
        for name in (("ours", "hf") if r % 2 == 0 else ("hf", "ours")):
            times[name].append(timed(steps[name], device)[0])
    ours_s, hf_s = statistics.median(times["ours"]), statistics.median(times["hf"])
    tokens = args.batch * args.seq_len
    n_matmul = total_params(config) - config.vocab_size * config.hidden_size  # all but the embed_in lookup
    return {
        "size": size, "params": total_params(config), "n_matmul": n_matmul,
        "ours_ms": ours_s * 1e3, "hf_ms": hf_s * 1e3, "ratio": hf_s / ours_s,
        "ours_tok_s": tokens / ours_s, "hf_tok_s": tokens / hf_s,
        "loss_diff": abs(first["ours"] - first["hf"]),
        "mfu_ours": 6 * n_matmul * tokens / ours_s / (args.peak_tflops * 1e12),
        "mfu_hf": 6 * n_matmul * tokens / hf_s / (args.peak_tflops * 1e12),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--sizes", "--size", nargs="+", dest="sizes",
                    help="sizes to run (default: every micro size on cpu, 160m on cuda)")
    ap.add_argument("--seq-len", type=int, help="default 128 on cpu, 2048 on cuda")
    ap.add_argument("--batch", type=int, help="sequences per step (default 16 on cpu, 8 on cuda)")
    ap.add_argument("--vocab", type=int, help="embedding rows (default 512 on cpu, 50304 on cuda)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per model (default 12 cpu, 20 cuda)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    ap.add_argument("--threads", type=int, help="torch threads (default: the cores this process may use)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="peak dense bf16 TFLOP/s for MFU (default 989, H100/H200 SXM)")
    args = ap.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch.cuda.is_available() is False")
    args.sizes = args.sizes or (["160m"] if cuda else list(MICRO_SIZES))
    args.seq_len = args.seq_len or (2048 if cuda else 128)
    args.batch = args.batch or (8 if cuda else 16)
    args.vocab = args.vocab or (50304 if cuda else 512)
    args.repeats = args.repeats or (20 if cuda else 12)
    args.warmup = max(1, args.warmup)
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    import transformers

    where = torch.cuda.get_device_name(device) if cuda else f"cpu, {threads} threads"
    print(f"train step, ours vs transformers {transformers.__version__} GPTNeoXForCausalLM (sdpa), torch {torch.__version__}, "
          f"{where}; seq {args.seq_len}, batch {args.batch}, vocab {args.vocab}, "
          f"{'bf16 autocast' if cuda else 'float32'}, median of {args.repeats} interleaved steps")
    head = f"{'size':<11} {'params':>11} {'ours ms/step':>13} {'HF ms/step':>11} {'ratio HF/ours':>14} {'ours tok/s':>11}"
    if cuda:
        head += f" {'MFU ours':>9} {'MFU HF':>7}"
    print(head + f" {'|loss0 diff|':>13}")
    for size in args.sizes:
        r = bench(size, args, device)
        line = (f"{r['size']:<11} {r['params']:>11,} {r['ours_ms']:>13.2f} {r['hf_ms']:>11.2f} "
                f"{r['ratio']:>14.2f} {r['ours_tok_s']:>11,.0f}")
        if cuda:
            line += f" {r['mfu_ours']:>9.1%} {r['mfu_hf']:>7.1%}"
        print(line + f" {r['loss_diff']:>13.1e}", flush=True)


if __name__ == "__main__":
    main()
