"""GPT-NeoX as Pythia uses it, in one file (after nanoGPT's model.py).

    from pythia_suite.model import GPTNeoX
    model = GPTNeoX.from_pretrained("pythia-70m/")              # a Hugging Face folder
    logits = model(input_ids)                                   # (B, T) -> (B, T, vocab)
    tokens = model.greedy_generate(prompt, max_new_tokens=32)   # (B, P) -> (B, 32)

Parameter names, config.json fields and numerics are those of transformers'
`GPTNeoXForCausalLM`, so folders move both ways. One layer, as Pythia configures it
(`use_parallel_residual=True`; there is no dropout, Pythia trained without it):

    x = x + attn(input_layernorm(x)) + mlp(post_attention_layernorm(x))

Attention uses rotary position embeddings on the first `rotary_pct` of each head's dims.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UserError
from .fileio import atomic_outputs


@dataclass
class GPTNeoXConfig:
    """The fields of Hugging Face's `GPTNeoXConfig` that define the network, same names and meaning."""

    vocab_size: int  # rows of embed_in / embed_out (Pythia pads 50277 tokens to 50304)
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int  # MLP width, 4 * hidden_size in Pythia
    hidden_act: str = "gelu"  # exact (erf) GELU; the only activation Pythia uses
    rotary_pct: float = 0.25  # fraction of each head's dims that get rotary embeddings
    rotary_emb_base: float = 10000
    max_position_embeddings: int = 2048
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    tie_word_embeddings: bool = False
    attention_bias: bool = True
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2
    # Carried for config.json round trips only: GPTNeoX initialises as Pythia did (see _init_weights).
    initializer_range: float = 0.02

    model_type: ClassVar[str] = "gpt_neox"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise UserError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.rotary_dim % 2:
            raise UserError(f"rotary dims per head int({self.head_dim} * {self.rotary_pct}) must be even")
        if self.hidden_act != "gelu":
            raise UserError(f"hidden_act {self.hidden_act!r} is not supported; only 'gelu' (Pythia's)")
        if self.tie_word_embeddings:
            raise UserError("tie_word_embeddings=true is not supported; Pythia's embeddings are untied")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)  # int() truncates, as transformers does

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTNeoXConfig:
        """Read a Hugging Face config.json (any transformers version); keys we do not model are ignored.

        Dropout settings are ignored: this model has no dropout (Pythia's are all 0).
        """
        if not isinstance(d, dict):
            raise UserError(f"config.json should hold a JSON object, not {type(d).__name__}")
        if d.get("model_type", cls.model_type) != cls.model_type:
            raise UserError(f"config.json is for model_type {d['model_type']!r}, not {cls.model_type!r}")
        d = dict(d)
        # The rotary settings have had three spellings: rotary_pct/rotary_emb_base (Pythia's hub
        # files), top-level partial_rotary_factor/rope_theta (transformers 4.4x writes both), and a
        # rope_parameters dict (transformers 5). Take whichever are present; they must agree.
        rope = d.get("rope_parameters") or {}
        if d.get("rope_scaling") or rope.get("rope_type", "default") != "default":
            scaling = d.get("rope_scaling") or rope
            raise UserError(f"config.json asks for rope scaling {scaling}; only plain rotary is supported")
        for name, new_name in (("rotary_pct", "partial_rotary_factor"), ("rotary_emb_base", "rope_theta")):
            values = {v for v in (d.get(name), d.get(new_name), rope.get(new_name)) if v is not None}
            if len(values) > 1:
                raise UserError(f"config.json gives conflicting {name}/{new_name} values {sorted(values)}")
            if values:
                d[name] = values.pop()
        if missing := [f.name for f in fields(cls) if f.default is MISSING and f.name not in d]:
            raise UserError(f"config.json lacks {', '.join(missing)}")
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def to_dict(self) -> dict[str, Any]:
        """config.json contents. Rotary settings use Pythia's names, which transformers 4 and 5 both read."""
        return {"architectures": ["GPTNeoXForCausalLM"], "model_type": self.model_type, **asdict(self)}


def rotary_cos_sin(positions: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (T, dim) for absolute `positions` (T,), in float32 as transformers computes them."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    freqs = positions.float()[:, None] * inv_freq  # (T, dim/2)
    angles = torch.cat((freqs, freqs), dim=-1)  # (T, dim)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.size(-1) dims of x (B, n_head, T, head_dim); the rest pass through.

    GPT-NeoX's "rotate_half" pairs dim i with dim i + dim/2 (GPT-J instead pairs 2i with 2i+1).
    """
    r = cos.size(-1)
    x_rot, x_pass = x[..., :r], x[..., r:]
    x1, x2 = x_rot.chunk(2, dim=-1)  # (B, n_head, T, r/2) each
    rotated = torch.cat((-x2, x1), dim=-1)  # (B, n_head, T, r)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


class KVCache:
    """Preallocated keys and values of every layer, for decoding a batch one step at a time.

    `k` and `v` are (n_layer, B, n_head, max_len, head_dim), allocated at the first update with
    that key's device and dtype (which autocast may choose); `pos` counts the positions filled.
    """

    def __init__(self, config: GPTNeoXConfig, batch_size: int, max_len: int) -> None:
        self.shape = (config.num_hidden_layers, batch_size, config.num_attention_heads, max_len, config.head_dim)
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_head, T, head_dim) at positions pos..pos+T; return all keys and values so far.

        The model advances `pos` once every layer has stored its T positions.
        """
        _, batch_size, _, max_len, _ = self.shape
        end = self.pos + k.size(2)
        if end > max_len or k.size(0) != batch_size:
            raise ValueError(
                f"KV cache for batch {batch_size} x {max_len} positions cannot take batch "
                f"{k.size(0)} x {k.size(2)} tokens at position {self.pos}"
            )
        if self.k is None:
            self.k = k.new_zeros(self.shape)
            self.v = v.new_zeros(self.shape)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, n_head, end, head_dim)

    def reorder(self, index: torch.Tensor) -> None:
        """Permute the first len(index) sequences of the batch (row i becomes old row index[i]);
        only rows that move are copied."""
        moved = torch.nonzero(index != torch.arange(len(index), device=index.device)).squeeze(1)
        if len(moved):
            self.k[:, moved] = self.k[:, index[moved]]  # (n_layer, moved, n_head, max_len, head_dim)
            self.v[:, moved] = self.v[:, index[moved]]

    def narrow(self, rows: int, pos: int, first: int = 0) -> KVCache:
        """A cache over `rows` sequences from `first` on that continues at position `pos`, sharing this
        cache's memory: decoding a subset of a batch without copying its keys and values."""
        if self.k is None or not 0 <= pos <= self.shape[3] or not (0 < rows and 0 <= first <= self.shape[1] - rows):
            raise ValueError(f"cannot narrow a cache of shape {self.shape} at pos {self.pos} to rows "
                             f"{first}..{first + rows - 1}, pos {pos}")
        view = KVCache.__new__(KVCache)
        view.shape = (self.shape[0], rows, *self.shape[2:])
        view.k, view.v = self.k[:, first : first + rows], self.v[:, first : first + rows]  # (n_layer, rows, ...)
        view.pos = pos
        return view


class Attention(nn.Module):
    def __init__(self, config: GPTNeoXConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.layer_idx = config.num_attention_heads, config.head_dim, layer_idx
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        # The fused projection is laid out per head, [q_0 k_0 v_0 q_1 k_1 v_1 ...], not [Q K V].
        qkv = self.query_key_value(x).view(B, T, self.n_head, 3 * self.head_dim)  # (B, T, n_head, 3*head_dim)
        q, k, v = qkv.transpose(1, 2).chunk(3, dim=-1)  # (B, n_head, T, head_dim) each
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        start = 0
        if cache is not None:
            start = cache.pos
            k, v = cache.update(self.layer_idx, k, v)  # (B, n_head, start+T, head_dim)
        # Equals transformers' eager attention to ~1e-6 in float32; with half inputs SDPA's fused
        # kernels accumulate in float32 (transformers takes the softmax in float32).
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # SDPA's is_causal aligns the mask top-left; query t sits at position start+t instead.
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, n_head*head_dim)
        return self.dense(y)


class MLP(nn.Module):
    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.intermediate_size)
        self.dense_4h_to_h = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x)))  # exact GELU = HF "gelu"


class Block(nn.Module):
    def __init__(self, config: GPTNeoXConfig, layer_idx: int) -> None:
        super().__init__()
        self.use_parallel_residual = config.use_parallel_residual
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = Attention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        attn = self.attention(self.input_layernorm(x), cos, sin, cache)
        if self.use_parallel_residual:  # GPT-J style: both branches read the same input
            return x + attn + self.mlp(self.post_attention_layernorm(x))
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x))


# Buffers that old transformers versions saved with the weights; they are derived, not learned.
_IGNORED_KEYS = re.compile(r"(^|\.)(attention\.bias|attention\.masked_bias|rotary_emb\.inv_freq)$")
_LAYER_KEY = re.compile(r"^gpt_neox\.layers\.(\d+)\.")
_WEIGHT_FILES = (  # (single file, shard index) in the order transformers prefers them
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)


class GPTNeoX(nn.Module):
    """GPT-NeoX language model with the parameter names of transformers' GPTNeoXForCausalLM files."""

    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__()
        self.config = config
        self.gpt_neox = nn.ModuleDict(
            dict(
                embed_in=nn.Embedding(config.vocab_size, config.hidden_size),
                layers=nn.ModuleList([Block(config, i) for i in range(config.num_hidden_layers)]),
                final_layer_norm=nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
            )
        )
        self.embed_out = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Pythia's GPT-NeoX init (its configs set init_method small_init, output_layer_init_method wang_init).

        small_init N(0, sqrt(2 / 5d)) for the embeddings and the projections that read the residual
        stream; wang_init N(0, 2 / (L sqrt(d))) for the two that write into it (attention.dense,
        mlp.dense_4h_to_h); biases 0, LayerNorm weight 1. Deterministic under torch.manual_seed.
        """
        d, n_layer = self.config.hidden_size, self.config.num_hidden_layers
        small, wang = math.sqrt(2 / (5 * d)), 2 / (n_layer * math.sqrt(d))
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            elif "norm" in name:
                nn.init.ones_(p)
            elif name.endswith(("attention.dense.weight", "mlp.dense_4h_to_h.weight")):
                nn.init.normal_(p, std=wang)
            else:
                nn.init.normal_(p, std=small)

    def forward(
        self, input_ids: torch.Tensor, past_key_values: KVCache | None = None, use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """Logits (B, T, vocab) for token ids (B, T).

        With a cache (passed in, or made for max_position_embeddings positions when use_cache=True),
        input_ids continue the cached sequence and the result is (logits, cache). With
        `logits_to_keep` n > 0 (transformers' name), logits of the last n positions only: (B, n, vocab).
        """
        B, T = input_ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = KVCache(self.config, B, self.config.max_position_embeddings)
        x = self.hidden(input_ids, cache)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]  # (B, n, C): the output head is a large share of the work
        logits = self.embed_out(x)  # (B, T or n, vocab)
        return logits if cache is None else (logits, cache)

    def hidden(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final hidden states (B, T, C), after the last layer norm: what the output head reads.
        With a cache, input_ids continue the cached sequence, and the cache then holds them too."""
        T = input_ids.size(1)
        start = cache.pos if cache is not None else 0
        if start + T > self.config.max_position_embeddings:
            raise ValueError(
                f"{start + T} positions exceed max_position_embeddings {self.config.max_position_embeddings}"
            )
        x = self.gpt_neox.embed_in(input_ids)  # (B, T, C)
        positions = torch.arange(start, start + T, device=input_ids.device)
        cos, sin = rotary_cos_sin(positions, self.config.rotary_dim, self.config.rotary_emb_base)  # (T, rotary_dim)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for block in self.gpt_neox.layers:
            x = block(x, cos, sin, cache)
        if cache is not None:
            cache.pos += T
        return self.gpt_neox.final_layer_norm(x)

    @torch.inference_mode()
    def greedy_generate(self, prompt: torch.Tensor, max_new_tokens: int, suppress: int | None = None) -> torch.Tensor:
        """The argmax continuation (B, max_new_tokens) of equal-length prompts (B, P).

        Always emits max_new_tokens (no stop at EOS). Token `suppress` is never chosen, as
        transformers' ``min_length`` masks the eos token (Pythia's memorization test: pass the eos id).
        """
        B, P = prompt.shape
        out = prompt.new_empty(B, max_new_tokens)
        if max_new_tokens == 0:
            return out
        cache = KVCache(self.config, B, P + max_new_tokens - 1)
        logits, _ = self(prompt, cache)
        for i in range(max_new_tokens):
            last = logits[:, -1]
            if suppress is not None:
                last[:, suppress] = -float("inf")
            out[:, i] = last.argmax(dim=-1)
            if i + 1 < max_new_tokens:
                logits, _ = self(out[:, i : i + 1], cache)
        return out

    def loss(self, batch, grad: bool | None = None, micro_batch: int | None = None) -> torch.Tensor:
        """Pythia's next-token loss on items of seq_len + 1 tokens: the model reads ``item[:-1]``
        and predicts ``item[1:]``; mean cross-entropy in nats/token, a float32 scalar.

        `batch` is what the data gives (`TrainingOrder.batch(step)`, uint16/int32 numpy) or any
        integer array or tensor (B, T+1). Gradients are tracked only when `grad` is True; by
        default only in training mode, so ``model.eval(); model.loss(batch)`` never builds a
        graph. `micro_batch` rows per forward pass bound the memory (evaluation only).
        """
        tokens = as_tokens(batch, self.embed_out.weight.device)
        if tokens.size(1) < 2:
            raise UserError(f"items need at least 2 tokens (inputs + shifted targets), got {tokens.size(1)}")
        grad = self.training if grad is None else grad
        with torch.set_grad_enabled(grad):
            if grad or not micro_batch:
                logits = self(tokens[:, :-1])  # (B, T, vocab)
                return causal_lm_loss(logits, tokens[:, 1:])
            total = torch.zeros((), dtype=torch.float64, device=tokens.device)
            for a in range(0, tokens.size(0), micro_batch):
                part = tokens[a : a + micro_batch]
                total += causal_lm_loss(self(part[:, :-1]), part[:, 1:]).double() * part.size(0)
            return (total / tokens.size(0)).float()

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None) -> GPTNeoX:
        """Load a Hugging Face GPT-NeoX folder: config.json and model.safetensors, pytorch_model.bin,
        or their sharded forms. Tensors keep their stored dtype unless `dtype` is given."""
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"model folder not found: {path}")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise UserError(f"{path} has no config.json (expected a Hugging Face GPT-NeoX folder)")
        try:
            config = GPTNeoXConfig.from_dict(json.loads(config_file.read_text()))
        except json.JSONDecodeError as e:
            raise UserError(f"{config_file} is not valid JSON: {e}") from None
        state = {
            ("embed_out.weight" if k == "lm_head.weight" else k): v  # transformers 5's in-memory name
            for k, v in _read_weights(path).items()
            if not _IGNORED_KEYS.search(k)
        }
        with torch.device("meta"):  # no memory and no init for weights about to be replaced
            model = cls(config)
        _check_weights(config, state, {k: v.shape for k, v in model.state_dict().items()})
        if dtype is not None:
            state = {k: v.to(dtype) for k, v in state.items()}
        model.load_state_dict(state, assign=True)
        return model.eval()

    def save_pretrained(self, path: str | Path) -> None:
        """Write config.json and model.safetensors that transformers' GPTNeoXForCausalLM loads as is.

        Same weights give the same bytes (fixed metadata, sorted keys); files appear atomically.
        """
        from safetensors.torch import save_file

        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_outputs(path / "config.json", path / "model.safetensors") as (config_tmp, weights_tmp):
            config_tmp.write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
            save_file(state, weights_tmp, metadata={"format": "pt"})


def as_tokens(batch, device: torch.device | str | None = None) -> torch.Tensor:
    """Token ids as the model takes them: a LongTensor (B, T) from a numpy array (uint16, int32, ...,
    such as `TrainingOrder.batch(step)`), a list, or a tensor; a 1-D input becomes one row."""
    if isinstance(batch, torch.Tensor):
        tokens = batch
    else:
        import numpy as np

        array = np.asarray(batch)
        if array.dtype.kind not in "iu":
            raise UserError(f"token ids must be integers, got {array.dtype}")
        tokens = torch.from_numpy(array.astype(np.int64, copy=True))  # uint16 has no torch twin
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise UserError(f"token ids must be integers, got {tokens.dtype}")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise UserError(f"token ids must be (batch, seq) or (seq,), got shape {tuple(tokens.shape)}")
    return tokens.to(device=device, dtype=torch.long)


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy of logits (B, T, vocab) against next-token targets (B, T), in float32.

    Targets are already shifted: for a Pythia item of 2049 tokens, inputs [:-1], targets [1:].
    """
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face folder, merged across shards, on the CPU."""
    from safetensors.torch import load_file

    def load(file: Path) -> dict[str, torch.Tensor]:
        try:
            if file.suffix == ".safetensors":
                return load_file(file)
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # any parse failure means a corrupt or foreign file
            raise UserError(f"cannot read {file}: {str(e).splitlines()[0]}") from None

    for single, index in _WEIGHT_FILES:
        if (path / single).is_file():
            return load(path / single)
        if (path / index).is_file():
            try:
                shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise UserError(f"{path / index} is not a shard index: {e!r}") from None
            return {k: v for shard in shards for k, v in load(path / shard).items()}
    names = ", ".join(name for pair in _WEIGHT_FILES for name in pair)
    raise UserError(f"{path} has no weights (looked for {names})")


def _check_weights(config: GPTNeoXConfig, state: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> None:
    """Raise UserError naming the first way the weights disagree with config.json."""
    n_layers = 1 + max((int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))), default=-1)
    if n_layers != config.num_hidden_layers:
        raise UserError(
            f"config.json says num_hidden_layers {config.num_hidden_layers} but the weights have {n_layers} layers"
        )
    for key, field, dim in (
        ("gpt_neox.embed_in.weight", "vocab_size", 0),
        ("gpt_neox.embed_in.weight", "hidden_size", 1),
        ("gpt_neox.layers.0.mlp.dense_h_to_4h.weight", "intermediate_size", 0),
    ):
        if key in state and state[key].ndim == 2 and state[key].shape[dim] != getattr(config, field):
            raise UserError(f"config.json says {field} {getattr(config, field)} but {key} is {list(state[key].shape)}")
    if missing := sorted(expected.keys() - state.keys()):
        raise UserError(f"the weights lack {missing[0]} ({len(missing)} tensors missing) that config.json implies")
    if unexpected := sorted(state.keys() - expected.keys()):
        raise UserError(
            f"the weights have {unexpected[0]} ({len(unexpected)} unexpected tensors) that config.json does not imply"
        )
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise UserError(f"config.json implies {key} of shape {list(shape)} but it is {list(state[key].shape)}")
