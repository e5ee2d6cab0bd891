"""Model sizes: the real Pythia suite and a micro family that trains on a CPU in minutes.

    from pythia_suite.sizes import config_for, non_embedding_params
    config = config_for("pythia-70m")                 # the real 70m shape, vocab 50304, seq 2048
    config = config_for("micro-1m", vocab_size=512, max_position_embeddings=128)
    non_embedding_params(config)                      # 991_616

Parameter counts follow the Pythia paper: "non-embedding" excludes `embed_in` and `embed_out`
but includes every LayerNorm and bias (70m: 18,915,328).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .model import GPTNeoXConfig


@dataclass(frozen=True)
class ModelSize:
    """One row of a size table. `learning_rate` is the peak Adam lr (cosine decay to 0.1x)."""

    name: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    learning_rate: float
    vocab_size: int = 50304  # the 20B tokenizer's 50277 tokens, padded for tensor-parallel shapes
    deduped: bool = False  # whether `EleutherAI/pythia-<name>-deduped` exists on the hub


# From the Pythia repository's models/*.yml and the hub config.json files. The two largest pad
# the vocabulary further (to a multiple of 128 x model-parallel size).
PYTHIA_SIZES: dict[str, ModelSize] = {
    s.name: s
    for s in [
        ModelSize("14m", 6, 128, 4, 1e-3, deduped=True),
        ModelSize("31m", 6, 256, 8, 1e-3, deduped=True),
        ModelSize("70m", 6, 512, 8, 1e-3, deduped=True),
        ModelSize("160m", 12, 768, 12, 6e-4, deduped=True),
        ModelSize("410m", 24, 1024, 16, 3e-4, deduped=True),
        ModelSize("1b", 16, 2048, 8, 3e-4, deduped=True),
        ModelSize("1.4b", 24, 2048, 16, 2e-4, deduped=True),
        ModelSize("2.8b", 32, 2560, 32, 1.6e-4, deduped=True),
        ModelSize("6.9b", 32, 4096, 32, 1.2e-4, vocab_size=50432, deduped=True),
        ModelSize("12b", 36, 5120, 40, 1.2e-4, vocab_size=50688, deduped=True),
    ]
}

# Same architecture as Pythia (parallel residual, rotary on 25% of each head, untied, 4x MLP), scaled
# down. The name is the approximate non-embedding parameter count (exact counts are within 15%).
# Head sizes are multiples of 8 so the rotary slice (25%) is even, as rotate_half needs.
# lr rule: Pythia uses 1e-3 for every model up to 70m, so all micro sizes use 1e-3.
MICRO_SIZES: dict[str, ModelSize] = {
    s.name: s
    for s in [
        ModelSize("micro-50k", 2, 48, 2, 1e-3),  # 56,640
        ModelSize("micro-200k", 4, 64, 4, 1e-3),  # 200,064
        ModelSize("micro-500k", 4, 96, 4, 1e-3),  # 447,552
        ModelSize("micro-1m", 5, 128, 4, 1e-3),  # 991,616
        ModelSize("micro-5m", 6, 256, 8, 1e-3),  # 4,739,072
    ]
}

SIZES: dict[str, ModelSize] = {**PYTHIA_SIZES, **MICRO_SIZES}

# Hub-style names map to the short names used in the table.
ALIASES: dict[str, str] = {
    **{f"pythia-{n}": n for n in PYTHIA_SIZES},
    **{f"pythia-{n}-deduped": n for n, s in PYTHIA_SIZES.items() if s.deduped},
    **{f"EleutherAI/pythia-{n}": n for n in PYTHIA_SIZES},
    **{f"EleutherAI/pythia-{n}-deduped": n for n, s in PYTHIA_SIZES.items() if s.deduped},
}


def get_size(name: str) -> ModelSize:
    """Look up a size by table name or alias (`70m`, `pythia-70m`, `EleutherAI/pythia-70m-deduped`)."""
    key = ALIASES.get(name, name)
    if key not in SIZES:
        raise UserError(f"unknown model size {name!r}{did_you_mean(name, [*SIZES, *ALIASES])}; "
                        f"known: {', '.join(SIZES)} (Pythia sizes also as pythia-70m, ...)")
    return SIZES[key]


def name_forms(name: str) -> set[str]:
    """The forms one model name takes: ``70m``, ``pythia-70m`` and ``EleutherAI/pythia-70m`` are
    one name; ``-deduped`` stays part of it (another model)."""
    base = name.removeprefix("EleutherAI/").removeprefix("pythia-")
    return {base, f"pythia-{base}", f"EleutherAI/pythia-{base}"}


def did_you_mean(name: str, known) -> str:
    """" (did you mean X?)" naming the known names closest to `name`, or "". A name that differs
    only in case or in its pythia-/EleutherAI/ form is the one suggestion."""
    import difflib

    known = list(known)
    lower = {k.lower(): k for k in known}
    forms = {f.lower() for f in name_forms(name)}
    same = [k for k in known if {f.lower() for f in name_forms(k)} & forms]
    close = same[:1] or [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def config_for(
    name: str, vocab_size: int | None = None, max_position_embeddings: int = 2048
) -> GPTNeoXConfig:
    """The GPT-NeoX config of a named size. `vocab_size` defaults to the size's padded Pythia vocab."""
    size = get_size(name)
    return GPTNeoXConfig(
        vocab_size=vocab_size if vocab_size is not None else size.vocab_size,
        hidden_size=size.hidden_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        intermediate_size=4 * size.hidden_size,
        max_position_embeddings=max_position_embeddings,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=0,  # <|endoftext|> in the 20B tokenizer is id 0 and serves as both
        eos_token_id=0,
    )


def non_embedding_params(config: GPTNeoXConfig) -> int:
    """Parameters outside `embed_in` and `embed_out`, as the Pythia paper counts them."""
    d, f = config.hidden_size, config.intermediate_size
    attention = 4 * d * d + (4 * d if config.attention_bias else 0)  # query_key_value + dense
    mlp = 2 * d * f + f + d
    layer_norms = 2 * 2 * d
    return config.num_hidden_layers * (attention + mlp + layer_norms) + 2 * d  # + final_layer_norm


def total_params(config: GPTNeoXConfig) -> int:
    """All parameters, with untied input and output embeddings."""
    return non_embedding_params(config) + 2 * config.vocab_size * config.hidden_size
