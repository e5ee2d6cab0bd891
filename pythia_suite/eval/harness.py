"""Our `GPTNeoX` as an lm-evaluation-harness model: a `TemplateLM` over the model object.

    from pythia_suite.eval.harness import SuiteLM
    lm = SuiteLM(batch_size=16)
    lm.use(model, tokenizer)          # any checkpoint; swap it without rebuilding tasks
    lm_eval.evaluator.evaluate(lm, task_manager.load(["micropile_pronoun"]))

Imports lm_eval at module level: import this module only after checking it is installed
(`pythia_suite.eval.evaluate.require_lm_eval`).

Why our own `TemplateLM` rather than the harness's `HFLM(pretrained=model)`: HFLM calls the model's
Hugging Face `generate` (attention masks, left padding, stopping criteria), reads `.config`,
`.device`, `.tie_weights` and expects outputs with `.logits`; that is a transformers model, not
this one. Three request types are all it takes here:

- ``loglikelihood``: the suite's own batched scorer (`pythia_suite.eval.loglik.loglikelihood`):
  right-padded rows (padding after the last real token cannot change a causal model's earlier
  logits), continuations of one identical context run that context once, the output head only
  where it is read. No logits are reused between requests that split a sequence differently,
  so the harness's one-token-continuation cache, which in lm-eval 0.4.x gathers the wrong
  positions when two requests share ``context + continuation[:-1]`` but split it differently,
  is never used. A continuation that tokenizes to nothing because one token spans
  the context/continuation join (where the harness dies on an assertion) is encoded on its own.
- ``loglikelihood_rolling``: the harness's own disjoint rolling windows, scored as above.
- ``generate_until``: greedy decoding with the KV cache, requests of equal prompt length batched,
  stopping at ``<|endoftext|>`` or when a stop string appears; the text is cut at the first stop
  string, as HFLM does. Only greedy decoding (``do_sample`` false, temperature 0) is offered.

A request that does not fit the model's context (prompt plus continuation, or prompt plus
``max_gen_toks``) is an error naming the sizes, not a silent left truncation.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM

from ..errors import UserError
from ..hf_files import EOS_TOKEN
from .loglik import loglikelihood


class SuiteLM(TemplateLM):
    """lm-evaluation-harness LM over a `GPTNeoX` and a `tokenizers.Tokenizer`, set with `use`."""

    backend = "causal"

    def __init__(self, batch_size: int = 16, device: str = "cpu") -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self._device = torch.device(device)
        self.model = None
        self.tokenizer = None
        self.label = ""  # "model step N", for error messages

    def use(self, model, tokenizer, label: str = "") -> "SuiteLM":
        """Score with `model` (a GPTNeoX) and `tokenizer` (tokenizers.Tokenizer) from now on."""
        if tokenizer.token_to_id(EOS_TOKEN) is None:
            raise UserError(f"{label}: the tokenizer has no {EOS_TOKEN!r} token")
        if tokenizer.get_vocab_size() > model.config.vocab_size:
            raise UserError(f"{label}: the tokenizer has {tokenizer.get_vocab_size()} tokens but the model only "
                            f"{model.config.vocab_size} embedding rows")
        self.model = model.to(self._device).eval()
        self.tokenizer = tokenizer
        self.label = label
        return self

    # ---- what TemplateLM asks for --------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.token_to_id(EOS_TOKEN)

    @property
    def max_length(self) -> int:
        return self.model.config.max_position_embeddings

    @property
    def device(self) -> torch.device:
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # Pythia adds no leading token; the harness prefixes <|endoftext|> itself for empty contexts.
        return self.tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        ctx, cont = super()._encode_pair(context, continuation)
        if not cont:  # a token spans the join: score the continuation's own tokens after the context
            stripped = context.rstrip()
            ctx, cont = self.tok_encode(stripped), self.tok_encode(context[len(stripped):] + continuation)
        return ctx, cont

    def loglikelihood(self, requests, disable_tqdm: bool = True):
        return super().loglikelihood(requests, disable_tqdm=True)  # one progress bar: the grid's

    # ---- log-likelihoods ---------------------------------------------------------------------

    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = True, **kwargs) -> list[tuple[float, bool]]:
        """(sum of log-probs of the continuation tokens, whether greedy decoding gives them) per
        request of ((context, continuation), context ids, continuation ids)."""
        for (strings, ctx, cont) in requests:
            if len(ctx) + len(cont) > self.max_length + 1:
                raise UserError(
                    f"{self.label}: a request of {len(ctx)} context + {len(cont)} continuation tokens does not fit "
                    f"the model's context of {self.max_length} (starts {str(strings[0])[:40]!r}); "
                    "use fewer shots (--num-fewshot) or shorter items")
        # the suite's batched scorer (pythia_suite.eval.loglik): contexts shared by several
        # continuations run once; an empty continuation scores 0 and is trivially greedy
        scored = [i for i, (_, _, cont) in enumerate(requests) if cont]
        res = loglikelihood(self.model, [(requests[i][1], requests[i][2]) for i in scored], batch_size=self.batch_size)
        results = [(0.0, True)] * len(requests)
        for k, i in enumerate(scored):
            results[i] = (float(res.logprob[k]), bool(res.is_greedy[k]))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = True) -> list[float]:
        """Log-likelihood of whole strings (after <|endoftext|>), in disjoint windows of the context."""
        windows, owner = [], []
        for i, (string,) in enumerate(req.args for req in requests):
            for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append(((None, None), ctx, cont))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (ll, _) in zip(owner, self._loglikelihood_tokens(windows)):
            totals[i] += ll
        return totals

    # ---- generation --------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = True) -> list[str]:
        """Greedy continuations, cut at the first stop string; equal-length prompts share a batch."""
        prepared = []
        for context, gen_kwargs in (req.args for req in requests):
            kw = dict(gen_kwargs)
            until = kw.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_gen = int(kw.pop("max_gen_toks", kw.pop("max_new_tokens", 256)))
            if kw.pop("do_sample", False) or float(kw.pop("temperature", 0.0) or 0.0) > 0:
                raise UserError(f"{self.label}: only greedy generation is supported (do_sample false, temperature 0)")
            ids = self.tok_encode(context) or [self.prefix_token_id]
            if len(ids) + max_gen > self.max_length:
                raise UserError(
                    f"{self.label}: a prompt of {len(ids)} tokens plus max_gen_toks {max_gen} does not fit the "
                    f"model's context of {self.max_length} (starts {context[:40]!r}); use fewer shots "
                    "(--num-fewshot) or a smaller max_gen_toks in the task's generation_kwargs")
            prepared.append((ids, until, max_gen))
        out: list[str | None] = [None] * len(prepared)
        groups = defaultdict(list)
        for i, (ids, until, max_gen) in enumerate(prepared):
            groups[(len(ids), tuple(until), max_gen)].append(i)
        for (_, until, max_gen), members in groups.items():
            for a in range(0, len(members), self.batch_size):
                rows = members[a : a + self.batch_size]
                texts = self._greedy([prepared[i][0] for i in rows], list(until), max_gen)
                for i, text in zip(rows, texts):
                    out[i] = text
        return out

    @torch.inference_mode()
    def _greedy(self, prompts: list[list[int]], until: list[str], max_gen: int) -> list[str]:
        """Greedy continuations of equal-length prompts until <|endoftext|>, a stop string or max_gen tokens."""
        from ..model import KVCache

        B, P = len(prompts), len(prompts[0])
        generated: list[list[int]] = [[] for _ in range(B)]
        done = [max_gen == 0] * B
        cache = KVCache(self.model.config, B, P + max_gen)
        logits, _ = self.model(torch.tensor(prompts, device=self._device), cache)
        for step in range(max_gen):
            next_ids = logits[:, -1].argmax(dim=-1)  # (B,)
            for r, t in enumerate(next_ids.tolist()):
                if done[r]:
                    continue
                if t == self.eot_token_id:
                    done[r] = True
                    continue
                generated[r].append(t)
                done[r] = len(generated[r]) >= max_gen or any(s and s in self.tok_decode(generated[r]) for s in until)
            if all(done) or step + 1 == max_gen:
                break
            logits, _ = self.model(next_ids[:, None], cache)
        texts = []
        for ids in generated:
            text = self.tok_decode(ids)
            for s in until:
                if s:
                    text = text.split(s)[0]
            texts.append(text)
        return texts


__all__ = ["SuiteLM"]
