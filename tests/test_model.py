"""GPT-NeoX (`pythia_suite.model`) against transformers' GPTNeoXForCausalLM, and the size tables.

    .venv/bin/python -m pytest tests/test_model.py -q

Tiny models (hidden 32, 2 layers, vocab 97) in float32; logits must agree within 1e-4.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from pythia_suite.errors import UserError
from pythia_suite.model import GPTNeoX, GPTNeoXConfig, KVCache, causal_lm_loss
from pythia_suite.sizes import (
    MICRO_SIZES,
    PYTHIA_SIZES,
    config_for,
    get_size,
    non_embedding_params,
    total_params,
)
from conftest import FORWARD_RTOL, random_model, scaled_error

VOCAB = 97

VARIANTS = {  # the architecture switches that change the computation
    "pythia": dict(),
    "full-rotary": dict(rotary_pct=1.0),
    "sequential": dict(use_parallel_residual=False),
    "sequential-full-rotary-base500-nobias": dict(
        use_parallel_residual=False, rotary_pct=1.0, rotary_emb_base=500, attention_bias=False
    ),
    "wide-heads": dict(hidden_size=64, num_attention_heads=2, intermediate_size=96),  # head_dim 32, rotary 8
}


def tiny_config(**overrides) -> GPTNeoXConfig:
    fields = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=64)
    return GPTNeoXConfig(**(fields | overrides))


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


def hf_model(hf, config: GPTNeoXConfig, ours: GPTNeoX | None = None):
    """transformers' model for our config (eager attention, float32), optionally with our weights."""
    hf_config = hf.GPTNeoXConfig.from_dict(config.to_dict())
    model = hf.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager").eval()
    assert isinstance(model, hf.GPTNeoXForCausalLM) and model.dtype == torch.float32
    if ours is not None:
        # transformers 5 names the head lm_head in memory (embed_out in files)
        state = {("lm_head.weight" if k == "embed_out.weight" else k): v for k, v in ours.state_dict().items()}
        model.load_state_dict(state, strict=True)
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The difference relative to the logits' scale (conftest.scaled_error); bounds: FORWARD_RTOL."""
    return scaled_error(a, b)


# ---- numerics against transformers -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_transformers_both_ways(hf, variant):
    config = tiny_config(**VARIANTS[variant])
    x = tokens(3, 20)
    ours = random_model(config)
    theirs = hf_model(hf, config, ours)
    with torch.no_grad():
        assert max_diff(ours(x), theirs(x).logits) < FORWARD_RTOL

        # and from transformers' own random init into ours
        theirs = hf_model(hf, config)
        state = {("embed_out.weight" if k == "lm_head.weight" else k): v for k, v in theirs.state_dict().items()}
        ours.load_state_dict(state, strict=True)
        assert max_diff(ours(x), theirs(x).logits) < FORWARD_RTOL


def test_loss_matches_transformers(hf):
    config = tiny_config()
    ours = random_model(config)
    x = tokens(2, 16)
    with torch.no_grad():
        loss = causal_lm_loss(ours(x[:, :-1]), x[:, 1:])
        assert max_diff(loss, hf_model(hf, config, ours)(x, labels=x).loss) < FORWARD_RTOL


def test_greedy_generate_matches_transformers(hf):
    config = tiny_config(eos_token_id=None)
    ours = random_model(config)
    prompt = tokens(4, 7)
    theirs = hf_model(hf, config, ours)
    with torch.no_grad():
        expected = theirs.generate(prompt, do_sample=False, max_new_tokens=12, eos_token_id=None, pad_token_id=0)
    assert torch.equal(ours.greedy_generate(prompt, 12), expected[:, 7:])


# ---- KV cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["pythia", "sequential"])
def test_cached_decoding_equals_full_forward(variant):
    config = tiny_config(**VARIANTS[variant])
    model = random_model(config)
    x = tokens(3, 24)
    with torch.no_grad():
        full = model(x)
        for chunks in ([1] * 24, [5] + [1] * 19, [3, 4, 1, 16]):  # prefill, one token, and chunks
            cache, parts, start = KVCache(config, 3, 24), [], 0
            for n in chunks:
                logits, cache = model(x[:, start : start + n], cache)
                parts.append(logits)
                start += n
            assert cache.pos == 24
            assert max_diff(torch.cat(parts, dim=1), full) < FORWARD_RTOL, chunks

        logits, cache = model(x[:, :10], use_cache=True)  # a cache made for max_position_embeddings
        step, _ = model(x[:, 10:11], cache)
        assert max_diff(step[:, 0], full[:, 10]) < FORWARD_RTOL


def test_greedy_generate_equals_argmax_of_full_forward():
    model = random_model(tiny_config())
    seq = tokens(3, 5)
    with torch.no_grad():
        for _ in range(8):  # the slow way: rerun the whole sequence for every token
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    generated = model.greedy_generate(seq[:, :5], 8)
    assert generated.shape == (3, 8) and generated.dtype == torch.long
    assert torch.equal(generated, seq[:, 5:])
    assert model.greedy_generate(seq[:, :5], 0).shape == (3, 0)


def test_cache_and_position_limits():
    config = tiny_config()
    model = random_model(config)
    with torch.no_grad():
        cache = KVCache(config, 2, 4)
        model(tokens(2, 3), cache)
        with pytest.raises(ValueError, match="cannot take"):
            model(tokens(2, 2), cache)
        with pytest.raises(ValueError, match="max_position_embeddings 64"):
            model(tokens(1, 65))


# ---- files -----------------------------------------------------------------------------------------


def test_save_pretrained_loads_in_transformers(hf, tmp_path):
    config = tiny_config(**VARIANTS["sequential-full-rotary-base500-nobias"])  # non-default rotary settings
    ours = random_model(config)
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    theirs, info = hf.GPTNeoXForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager", output_loading_info=True
    )
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    rope = theirs.config.rope_parameters
    assert (rope["partial_rotary_factor"], rope["rope_theta"]) == (1.0, 500)
    x = tokens(2, 12)
    with torch.no_grad():
        assert max_diff(ours(x), theirs.eval()(x).logits) < FORWARD_RTOL


def test_save_pretrained_is_deterministic_and_round_trips(tmp_path):
    model = random_model(tiny_config())
    model.save_pretrained(tmp_path / "a")
    model.save_pretrained(tmp_path / "b")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded = GPTNeoX.from_pretrained(tmp_path / "a")
    assert loaded.config == model.config
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert not list(tmp_path.glob("a/.*"))  # no temporaries left behind


def test_loads_transformers_save_pretrained(hf, tmp_path):
    config = tiny_config()
    theirs = hf_model(hf, config)
    theirs.save_pretrained(tmp_path)  # transformers 5 writes rope_parameters, not rotary_pct
    ours = GPTNeoX.from_pretrained(tmp_path)
    assert ours.config == config
    x = tokens(2, 12)
    with torch.no_grad():
        assert max_diff(ours(x), theirs(x).logits) < FORWARD_RTOL


def test_loads_sharded_safetensors(hf, tmp_path):
    config = tiny_config()
    theirs = hf_model(hf, config)
    theirs.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = GPTNeoX.from_pretrained(tmp_path)
    x = tokens(2, 12)
    with torch.no_grad():
        assert max_diff(ours(x), theirs(x).logits) < FORWARD_RTOL


def write_bin_folder(path: Path, config: GPTNeoXConfig, state: dict[str, torch.Tensor]) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config.to_dict()))
    torch.save(state, path / "pytorch_model.bin")
    return path


def test_loads_pytorch_model_bin_with_old_buffers(tmp_path):
    config = tiny_config()
    model = random_model(config)
    state = dict(model.state_dict())
    # buffers that transformers 4.x saved: causal mask, masked_bias, rotary inv_freq
    state["gpt_neox.layers.0.attention.bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
    state["gpt_neox.layers.0.attention.masked_bias"] = torch.tensor(-1e9)
    state["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = torch.ones(1)
    state["lm_head.weight"] = state.pop("embed_out.weight")  # transformers 5's in-memory name
    loaded = GPTNeoX.from_pretrained(write_bin_folder(tmp_path / "bin", config, state))
    x = tokens(2, 10)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_from_pretrained_dtype(tmp_path):
    model = random_model(tiny_config())
    model.save_pretrained(tmp_path)
    assert GPTNeoX.from_pretrained(tmp_path).embed_out.weight.dtype == torch.float32
    assert GPTNeoX.from_pretrained(tmp_path, dtype=torch.bfloat16).embed_out.weight.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(hidden_size=64), "config.json says hidden_size 64 but gpt_neox.embed_in.weight is [97, 32]"),
        (dict(vocab_size=50), "config.json says vocab_size 50 but gpt_neox.embed_in.weight is [97, 32]"),
        (dict(num_hidden_layers=3), "config.json says num_hidden_layers 3 but the weights have 2 layers"),
        (dict(intermediate_size=64), "config.json says intermediate_size 64 but gpt_neox.layers.0.mlp"),
        (dict(attention_bias=False), "the weights have gpt_neox.layers.0.attention.dense.bias (4 unexpected"),
    ],
)
def test_config_that_does_not_match_weights(tmp_path, edit, message):
    random_model(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | edit))
    with pytest.raises(UserError, match=re.escape(message)) as e:
        GPTNeoX.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)


def test_missing_tensor_and_bad_files(tmp_path):
    config = tiny_config()
    state = dict(random_model(config).state_dict())
    del state["gpt_neox.final_layer_norm.bias"]
    with pytest.raises(UserError, match=r"the weights lack gpt_neox\.final_layer_norm\.bias \(1 tensors"):
        GPTNeoX.from_pretrained(write_bin_folder(tmp_path / "missing", config, state))

    with pytest.raises(UserError, match="model folder not found"):
        GPTNeoX.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no config.json"):
        GPTNeoX.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.raises(UserError, match="has no weights"):
        GPTNeoX.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"\x08not a safetensors file")
    with pytest.raises(UserError, match="cannot read .*model.safetensors"):
        GPTNeoX.from_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        GPTNeoX.from_pretrained(tmp_path / "empty")


# ---- config.json ---------------------------------------------------------------------------------


PYTHIA_70M_HUB_CONFIG = {  # EleutherAI/pythia-70m config.json (transformers 4.24 era)
    "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
    "hidden_size": 512, "initializer_range": 0.02, "intermediate_size": 2048, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 8,
    "num_hidden_layers": 6, "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.24.0", "use_cache": True,
    "use_parallel_residual": True, "vocab_size": 50304,
}


def test_config_reads_every_transformers_spelling():
    expected = config_for("pythia-70m")
    assert GPTNeoXConfig.from_dict(PYTHIA_70M_HUB_CONFIG) == expected
    v4_45 = PYTHIA_70M_HUB_CONFIG | {"partial_rotary_factor": 0.25, "rope_theta": 10000, "rope_scaling": None,
                                    "attention_dropout": 0.0, "hidden_dropout": 0.0, "classifier_dropout": 0.1}
    assert GPTNeoXConfig.from_dict(v4_45) == expected
    v5 = {k: v for k, v in PYTHIA_70M_HUB_CONFIG.items() if k not in ("rotary_pct", "rotary_emb_base")}
    v5["rope_parameters"] = {"partial_rotary_factor": 0.25, "rope_theta": 10000, "rope_type": "default"}
    assert GPTNeoXConfig.from_dict(v5) == expected
    assert GPTNeoXConfig.from_dict(expected.to_dict()) == expected
    assert expected.to_dict()["model_type"] == "gpt_neox"
    assert expected.to_dict()["architectures"] == ["GPTNeoXForCausalLM"]


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"rotary_pct": 0.5, "partial_rotary_factor": 0.25}, "conflicting rotary_pct/partial_rotary_factor"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope scaling"),
        ({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}, "rope scaling"),
        ({"model_type": "llama"}, "model_type 'llama'"),
        ({"hidden_act": "relu"}, "hidden_act 'relu'"),
        ({"tie_word_embeddings": True}, "tie_word_embeddings"),
        ({"num_attention_heads": 7}, "not divisible"),
    ],
)
def test_config_errors(edit, message):
    with pytest.raises(UserError, match=re.escape(message)):
        GPTNeoXConfig.from_dict(PYTHIA_70M_HUB_CONFIG | edit)


def test_config_requires_the_sizes():
    config = {k: v for k, v in PYTHIA_70M_HUB_CONFIG.items() if k not in ("hidden_size", "vocab_size")}
    with pytest.raises(UserError, match="config.json lacks vocab_size, hidden_size"):
        GPTNeoXConfig.from_dict(config)


# ---- initialisation ------------------------------------------------------------------------------


def test_init_is_deterministic_and_pythia_like():
    config = tiny_config(hidden_size=64, intermediate_size=256, num_hidden_layers=4, vocab_size=2000)
    torch.manual_seed(3)
    a = GPTNeoX(config).state_dict()
    torch.manual_seed(3)
    b = GPTNeoX(config).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    small, wang = (2 / (5 * 64)) ** 0.5, 2 / (4 * 64**0.5)
    assert a["gpt_neox.embed_in.weight"].std().item() == pytest.approx(small, rel=0.05)
    assert a["embed_out.weight"].std().item() == pytest.approx(small, rel=0.05)
    assert a["gpt_neox.layers.0.mlp.dense_4h_to_h.weight"].std().item() == pytest.approx(wang, rel=0.05)
    assert torch.all(a["gpt_neox.layers.1.attention.query_key_value.bias"] == 0)
    assert torch.all(a["gpt_neox.final_layer_norm.weight"] == 1)


# ---- sizes -----------------------------------------------------------------------------------------


def test_pythia_parameter_counts_match_the_paper():
    assert non_embedding_params(config_for("70m")) == 18_915_328
    assert non_embedding_params(config_for("160m")) == 85_056_000
    assert non_embedding_params(config_for("410m")) == 302_311_424
    assert total_params(config_for("70m")) == 70_426_624


@pytest.mark.parametrize("name", [*PYTHIA_SIZES, *MICRO_SIZES])
def test_counts_equal_the_modules(name):
    config = config_for(name, max_position_embeddings=128)
    with torch.device("meta"):  # shapes only, no memory
        model = GPTNeoX(config)
    embeddings = 2 * config.vocab_size * config.hidden_size
    assert sum(p.numel() for p in model.parameters()) == total_params(config)
    assert total_params(config) - non_embedding_params(config) == embeddings


def test_pythia_table():
    assert list(PYTHIA_SIZES) == ["14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]
    assert all(s.deduped for s in PYTHIA_SIZES.values())
    c = config_for("pythia-1.4b-deduped")
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (24, 2048, 16, 8192)
    assert (c.rotary_pct, c.use_parallel_residual, c.tie_word_embeddings, c.max_position_embeddings) == (
        0.25, True, False, 2048)
    assert get_size("EleutherAI/pythia-12b").learning_rate == 1.2e-4
    assert config_for("12b").vocab_size == 50688 and config_for("70m").vocab_size == 50304


def test_micro_sizes_are_named_by_their_counts():
    assert len(MICRO_SIZES) >= 5
    counts = [non_embedding_params(config_for(n, vocab_size=256)) for n in MICRO_SIZES]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    for name, count in zip(MICRO_SIZES, counts):
        number, unit = re.fullmatch(r"micro-(\d+)([km])", name).groups()
        nominal = int(number) * {"k": 1_000, "m": 1_000_000}[unit]
        assert 0.7 < count / nominal < 1.3, (name, count)
    assert config_for("micro-1m", vocab_size=300, max_position_embeddings=96).max_position_embeddings == 96


def test_unknown_size_lists_the_known_ones():
    with pytest.raises(UserError, match=r"unknown model size 'pythia-7b' \(did you mean .*\); known: 14m, 31m, 70m, .*micro-50k"):
        config_for("pythia-7b")
