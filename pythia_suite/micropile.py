"""The micro-Pile: a synthetic corpus with planted phenomena and an exact record of them.

It is the demo's default corpus. Tiny GPT-NeoX models train on it on a CPU in minutes, and the
three case studies then have ground truth to be checked against, which the real Pile cannot give:

- Background text: pseudo-words (syllable strings, never a real word used elsewhere here) in word
  classes with Zipfian frequencies, a small grammar, and a topic per document that favours some
  nouns. That gives structure at several levels (unigram, syntax, document context), so loss falls
  with model size.
- Memorization: canaries, passages of pseudo-words drawn *uniformly* from a pool used nowhere else
  (so no model can predict them without having memorized them). Each is repeated d times, for d in
  `canary_repeats`, one repetition per document, at recorded, spread-out document positions. A
  repeat count of 0 makes control canaries: drawn the same way, recorded, never written. With
  `canary_private_words` = P, each canary draws its words from its own P words (the pool split
  between canaries), so any of its words names it. With P >= `canary_words` each word occurs once
  in its passage: every word names the next one, the passage is a chain that a small model can
  store within one pass (and cannot guess without it); with fewer, words repeat and the next word
  depends on a longer context. The 0-copy controls measure what the prompt alone predicts.
- Term frequency: `Q:What is {x1} times {x2}? A:{answer}` and `... plus ...` lines (Pythia's
  forms), with x1 drawn from a Zipf law over a seeded permutation of 0..99, so operand frequency
  spans two orders of magnitude and is unrelated to the number's value.
- Bias: WinoBias occupations in sentences whose pronoun (he/she) refers to the occupation, with the
  stereotypical pronoun at probability `pronoun_skew`; he/she are planted only in these sentences.

Everything comes from one `numpy` Generator seeded by `config.seed`, consumed in a fixed order, so
a config gives byte-identical output. Documents are generated in blocks (vectorised) and streamed
to disk; only counters and the canary positions are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .fileio import atomic_outputs

GROUND_TRUTH_FORMAT = "pythia-suite/micropile-ground-truth/v1"
KINDS = ("background", "arithmetic", "occupation")  # canaries are placed separately

# WinoBias occupations (Zhao et al. 2018) with their stereotypical gender.
MALE_OCCUPATIONS = ("carpenter", "mechanic", "construction worker", "laborer", "driver", "sheriff", "mover",
                    "developer", "farmer", "guard", "chief", "lawyer", "CEO", "analyst", "manager", "physician",
                    "supervisor", "salesperson", "janitor", "cook")
FEMALE_OCCUPATIONS = ("attendant", "cashier", "teacher", "nurse", "assistant", "secretary", "auditor", "cleaner",
                      "receptionist", "clerk", "counselor", "designer", "hairdresser", "writer", "housekeeper",
                      "baker", "accountant", "editor", "librarian", "tailor")
OCCUPATIONS = MALE_OCCUPATIONS + FEMALE_OCCUPATIONS
# The pronoun can only refer to the occupation (no second person), and no other occupation is named.
OCCUPATION_TEMPLATES = (
    "The {occupation} said that {pronoun} would finish the report soon.",
    "The {occupation} asked the visitor whether {pronoun} could help.",
    "The {occupation} explained that {pronoun} had worked there for years.",
    "Yesterday the {occupation} called because {pronoun} needed more time.",
    "The {occupation} smiled when {pronoun} heard the news.",
)
ARITHMETIC_FORMS = {"times": "Q:What is {x1} times {x2}? A:{answer}", "plus": "Q:What is {x1} plus {x2}? A:{answer}"}
X1_VALUES = 100  # x1 in 0..99
X2_RANGE = (1, 50)  # inclusive
# Real closed-class words; content words are pseudo-words.
DETERMINERS = ("the", "a", "this", "every", "some", "each", "no", "one")
PREPOSITIONS = ("in", "on", "with", "near", "under", "behind", "over", "from", "beside", "through")

_ONSETS = ("", "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gl", "kr", "pl", "st", "tr", "sk")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "k")

DOCS_PER_BLOCK = 2048
SENTENCES_PER_DOC = (3, 10)  # background, inclusive
ARITHMETIC_LINES_PER_DOC = (8, 24)  # long documents so rare operands still occur in a ~1 MB corpus
OCCUPATION_SENTENCES_PER_DOC = (2, 6)
P_ADJECTIVE = 0.3  # per noun phrase
P_PREPOSITIONAL = 0.35  # per sentence
P_TOPIC_NOUN = 0.5  # a noun comes from the document's topic rather than the whole noun class
CANARY_JITTER = 0.8  # a repetition lies in the middle 80% of its 1/d share of the corpus
MAX_CANARY_SHARE = 0.5  # refuse configs whose canaries alone would be over half the target size


@dataclass(frozen=True)
class MicroPileConfig:
    seed: int = 0
    target_bytes: int = 4_000_000  # size of the .jsonl file; generation stops at the first document past it
    vocab_words: int = 3000  # background pseudo-word types (nouns 1/2, verbs 1/4, adjectives 1/4)
    topics: int = 16  # document topics, each favouring 1/topics of the nouns
    word_zipf: float = 1.0  # Zipf exponent of word frequencies within a class
    canary_repeats: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    canaries_per_repeat: int = 4
    canary_words: int = 80  # every word is >= 1 token, so >= 80 tokens with any BPE
    canary_pool: int = 1000  # pseudo-words that occur only in canaries
    canary_private_words: int = 0  # > 0: each canary draws from its own words, this many (pool split per canary)
    arithmetic_fraction: float = 0.05  # share of (non-canary) documents that are arithmetic Q/A
    x1_zipf: float = 1.0  # Zipf exponent of x1 over its permuted ranks
    occupation_fraction: float = 0.05  # share of (non-canary) documents of occupation sentences
    pronoun_skew: float = 0.8  # P(stereotypical pronoun)


def _check(cfg: MicroPileConfig) -> None:
    a, o = cfg.arithmetic_fraction, cfg.occupation_fraction
    rules = {
        f"target_bytes must be positive, got {cfg.target_bytes}": cfg.target_bytes >= 1,
        "need topics >= 1 and vocab_words >= 4 x topics": 1 <= cfg.topics <= cfg.vocab_words // 4,
        "canary_repeats must be integers >= 0 (0: a control canary, never written)":
            all(isinstance(d, int) and d >= 0 for d in cfg.canary_repeats),
        "need canaries_per_repeat >= 0, canary_words >= 1, canary_pool >= 2":
            cfg.canaries_per_repeat >= 0 and cfg.canary_words >= 1 and cfg.canary_pool >= 2,
        f"canary_private_words x canaries ({cfg.canary_private_words} x "
        f"{len(cfg.canary_repeats) * cfg.canaries_per_repeat}) must fit in canary_pool {cfg.canary_pool}, with >= 2 each":
            cfg.canary_private_words == 0 or (cfg.canary_private_words >= 2 and cfg.canary_private_words
                                              * len(cfg.canary_repeats) * cfg.canaries_per_repeat <= cfg.canary_pool),
        f"arithmetic_fraction ({a}) and occupation_fraction ({o}) must be >= 0 with a sum below 1":
            a >= 0 and o >= 0 and a + o < 1,
        f"pronoun_skew must be in [0, 1], got {cfg.pronoun_skew}": 0 <= cfg.pronoun_skew <= 1,
    }
    if problems := [msg for msg, ok in rules.items() if not ok]:
        raise UserError("bad micro-Pile config: " + "; ".join(problems))


def _zipf_cdf(n: int, s: float) -> np.ndarray:
    c = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -s)
    return c / c[-1]


def _draw(rng: np.random.Generator, cdf: np.ndarray, size) -> np.ndarray:
    """Ranks drawn from a discrete law by inverse CDF: one uniform per draw, vectorised."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _reserved_words() -> set[str]:
    """Every real word the corpus uses, so no pseudo-word can collide with one."""
    text = " ".join([*OCCUPATION_TEMPLATES, *ARITHMETIC_FORMS.values(), *OCCUPATIONS, *DETERMINERS,
                     *PREPOSITIONS, "he she his her him hers q"])
    return {w.strip("{}?.:").lower() for w in text.replace(":", " ").split()}


def _pseudo_words(rng: np.random.Generator, n: int, syllable_p: tuple[float, float, float],
                  exclude: set[str]) -> list[str]:
    """`n` distinct pseudo-words of 1-3 syllables (`syllable_p`), >= 2 letters, not reserved nor in `exclude`."""
    words: list[str] = []
    seen = _reserved_words() | exclude
    while len(words) < n:
        m = 2 * (n - len(words)) + 16
        syllables = rng.choice([1, 2, 3], size=m, p=syllable_p)
        parts = [rng.integers(len(t), size=(m, 3)) for t in (_ONSETS, _VOWELS, _CODAS)]
        for i in range(m):
            w = "".join(_ONSETS[parts[0][i, j]] + _VOWELS[parts[1][i, j]] + _CODAS[parts[2][i, j]]
                        for j in range(syllables[i]))
            if len(w) >= 2 and w not in seen and len(words) < n:
                seen.add(w)
                words.append(w)
    return words


@dataclass
class _Lexicon:
    """The vocabulary as one table of pieces with their leading space: a document is an index array."""

    table: np.ndarray  # object array of str
    start: dict[str, int]  # first table index of each class
    cdf: dict[str, np.ndarray]  # Zipf CDF over each class's ranks
    canary_pool: list[str]
    x1_by_rank: np.ndarray  # x1 value of each frequency rank (a permutation of 0..99)


def _build_lexicon(rng: np.random.Generator, cfg: MicroPileConfig) -> _Lexicon:
    n_nouns = (cfg.vocab_words // 2) // cfg.topics * cfg.topics  # a whole number of nouns per topic
    n_verbs = (cfg.vocab_words - n_nouns) // 2
    sizes = {"noun": n_nouns, "verb": n_verbs, "adj": cfg.vocab_words - n_nouns - n_verbs}
    words = _pseudo_words(rng, cfg.vocab_words, (0.2, 0.5, 0.3), set())
    # canary words: two syllables (a passage of 80 is ~600 bytes), never seen in background text
    canary_pool = _pseudo_words(rng, cfg.canary_pool, (0.0, 1.0, 0.0), set(words))
    capitalised = [w.capitalize() for w in DETERMINERS]
    classes = {"det": list(DETERMINERS), "det_cap": capitalised, "det_start": capitalised}
    at = 0
    for name, n in sizes.items():  # shorter words get the frequent ranks, as in natural language
        classes[name] = sorted(words[at : at + n], key=len)
        at += n
    classes["prep"] = list(PREPOSITIONS)
    pieces, start = [], {}
    for name, ws in classes.items():
        start[name] = len(pieces)
        pieces += [w if name == "det_start" else " " + w for w in ws]  # no space at a document start
    start["period"] = len(pieces)
    pieces.append(".")
    cdf = {name: _zipf_cdf(len(classes[name]), cfg.word_zipf) for name in ("det", "noun", "verb", "adj", "prep")}
    cdf["topic_noun"] = _zipf_cdf(n_nouns // cfg.topics, cfg.word_zipf)
    cdf["x1"] = _zipf_cdf(X1_VALUES, cfg.x1_zipf)
    return _Lexicon(np.array(pieces, dtype=object), start, cdf, canary_pool, x1_by_rank=rng.permutation(X1_VALUES))


def _background_docs(rng: np.random.Generator, lex: _Lexicon, cfg: MicroPileConfig, n: int) -> list[str]:
    """`n` documents of sentences  DET ADJ? NOUN VERB DET ADJ? NOUN (PREP DET ADJ? NOUN)? ."""
    n_sent = rng.integers(SENTENCES_PER_DOC[0], SENTENCES_PER_DOC[1] + 1, n)
    s = int(n_sent.sum())
    topic = np.repeat(rng.integers(cfg.topics, size=n), n_sent)[:, None]
    st, cdf = lex.start, lex.cdf
    # slots: 0 DET 1 ADJ 2 NOUN 3 VERB 4 DET 5 ADJ 6 NOUN 7 PREP 8 DET 9 ADJ 10 NOUN 11 "."; -1 = empty
    slots = np.empty((s, 12), np.int64)
    slots[:, [0, 4, 8]] = st["det"] + _draw(rng, cdf["det"], (s, 3))
    adj = st["adj"] + _draw(rng, cdf["adj"], (s, 3))
    slots[:, [1, 5, 9]] = np.where(rng.random((s, 3)) < P_ADJECTIVE, adj, -1)
    # a topic noun is rank r within the topic: noun index r * topics + topic keeps the Zipf shape
    topic_noun = _draw(rng, cdf["topic_noun"], (s, 3)) * cfg.topics + topic
    any_noun = _draw(rng, cdf["noun"], (s, 3))
    slots[:, [2, 6, 10]] = st["noun"] + np.where(rng.random((s, 3)) < P_TOPIC_NOUN, topic_noun, any_noun)
    slots[:, 3] = st["verb"] + _draw(rng, cdf["verb"], s)
    slots[:, 7] = st["prep"] + _draw(rng, cdf["prep"], s)
    slots[:, 11] = st["period"]
    slots[rng.random(s) >= P_PREPOSITIONAL, 7:11] = -1
    first = np.cumsum(n_sent) - n_sent  # first sentence of each document
    slots[:, 0] += st["det_cap"] - st["det"]  # capitalised sentence start
    slots[first, 0] += st["det_start"] - st["det_cap"]  # and no leading space at a document start
    keep = slots >= 0
    pieces = lex.table[slots[keep]].tolist()
    return _join(pieces, np.cumsum(np.add.reduceat(keep.sum(1), first)), "")


@dataclass
class _Planted:
    """Documents of one planted kind, with per-line labels so only written documents are counted."""

    docs: list[str]
    line_ends: np.ndarray  # cumulative line count at the end of each document
    labels: dict[str, np.ndarray]  # per-line arrays

    def written(self, n_docs: int) -> dict[str, np.ndarray]:
        cut = int(self.line_ends[n_docs - 1]) if n_docs else 0
        return {k: v[:cut] for k, v in self.labels.items()}


def _line_ends(rng: np.random.Generator, bounds: tuple[int, int], n: int) -> tuple[np.ndarray, int]:
    """Cumulative line counts of `n` documents of bounds[0]..bounds[1] lines, and the total."""
    ends = np.cumsum(rng.integers(bounds[0], bounds[1] + 1, n))
    return ends, int(ends[-1]) if n else 0


def _join(pieces: list[str], ends: np.ndarray, sep: str) -> list[str]:
    """One document per run of pieces, the runs ending at `ends`."""
    ends = ends.tolist()
    return [sep.join(pieces[a:b]) for a, b in zip([0] + ends[:-1], ends)]


def _arithmetic_docs(rng: np.random.Generator, lex: _Lexicon, n: int) -> _Planted:
    ends, m = _line_ends(rng, ARITHMETIC_LINES_PER_DOC, n)
    op = rng.integers(len(ARITHMETIC_FORMS), size=m)  # index into ARITHMETIC_FORMS
    x1 = lex.x1_by_rank[_draw(rng, lex.cdf["x1"], m)]
    x2 = rng.integers(X2_RANGE[0], X2_RANGE[1] + 1, m)
    answer = np.where(op == 0, x1 * x2, x1 + x2)
    forms = list(ARITHMETIC_FORMS.values())
    lines = [forms[o].format(x1=a, x2=b, answer=c)
             for o, a, b, c in zip(op.tolist(), x1.tolist(), x2.tolist(), answer.tolist())]
    return _Planted(_join(lines, ends, "\n"), ends, {"op": op, "x1": x1, "x2": x2, "answer": answer})


def _occupation_docs(rng: np.random.Generator, cfg: MicroPileConfig, n: int) -> _Planted:
    ends, m = _line_ends(rng, OCCUPATION_SENTENCES_PER_DOC, n)
    occ = rng.integers(len(OCCUPATIONS), size=m)
    template = rng.integers(len(OCCUPATION_TEMPLATES), size=m)
    male_stereotype = occ < len(MALE_OCCUPATIONS)
    he = (rng.random(m) < cfg.pronoun_skew) == male_stereotype
    lines = [OCCUPATION_TEMPLATES[t].format(occupation=OCCUPATIONS[o], pronoun="he" if h else "she")
             for t, o, h in zip(template.tolist(), occ.tolist(), he.tolist())]
    return _Planted(_join(lines, ends, " "), ends, {"occ": occ, "he": he})


def _canaries(rng: np.random.Generator, lex: _Lexicon, cfg: MicroPileConfig) -> tuple[list[dict], list]:
    """Canary texts and their emission points (fraction of target bytes, canary id), in corpus order.

    Repetition k of a canary repeated d times lies in the middle of the k-th 1/d of the corpus, so
    repetitions are spread out and never adjacent (a copy in the same context would be copying,
    not memorization).
    """
    pool = np.array(lex.canary_pool, dtype=object)
    canaries, events = [], []
    private = cfg.canary_private_words
    for d in cfg.canary_repeats:
        for _ in range(cfg.canaries_per_repeat):
            cid = len(canaries)
            words = pool[cid * private : (cid + 1) * private] if private else pool
            # with words enough, each at most once: every word then names the next (a chain)
            draw = (rng.permutation(len(words))[: cfg.canary_words] if private >= cfg.canary_words
                    else rng.integers(len(words), size=cfg.canary_words))
            text = " ".join(words[draw])
            canaries.append({"id": cid, "repeats": d, "text": text, "documents": []})
            u = (np.arange(d) + (1 - CANARY_JITTER) / 2 + CANARY_JITTER * rng.random(d)) / d
            events += [(float(x), cid) for x in u]
    if len({c["text"] for c in canaries}) != len(canaries):
        raise UserError("two canaries drew the same text; use a larger canary_pool or canary_words")
    return canaries, sorted(events)


def _jsonl(text: str) -> str:
    return json.dumps({"text": text}) + "\n"  # ASCII-escaped, so len() is the size in bytes


def default_ground_truth_path(path_jsonl: str | os.PathLike) -> Path:
    return Path(path_jsonl).with_suffix(".ground_truth.json")  # NAME.jsonl -> NAME.ground_truth.json


class _Tally:
    """What was planted in the documents actually written (a block may stop part-way)."""

    def __init__(self) -> None:
        self.by_kind = dict.fromkeys(KINDS + ("canary",), 0)
        self.x1 = np.zeros((len(ARITHMETIC_FORMS), X1_VALUES), np.int64)
        self.numbers = np.zeros(X1_VALUES, np.int64)  # 0..99 as whole numbers anywhere (x1, x2 or answer)
        self.he_she = np.zeros((len(OCCUPATIONS), 2), np.int64)

    def add(self, used: list[int], ar: _Planted, oc: _Planted) -> None:
        for kind, n in zip(KINDS, used):
            self.by_kind[kind] += n
        a = ar.written(used[1])
        np.add.at(self.x1, (a["op"], a["x1"]), 1)
        small_answers = a["answer"][a["answer"] < X1_VALUES]
        self.numbers += np.bincount(np.concatenate([a["x1"], a["x2"], small_answers]), minlength=X1_VALUES)
        o = oc.written(used[2])
        np.add.at(self.he_she, (o["occ"], (~o["he"]).astype(np.int64)), 1)

    def occupations(self) -> list[dict]:
        items = []
        for i, (he, she) in enumerate(self.he_she.tolist()):
            male = i < len(MALE_OCCUPATIONS)  # skew: the realised P(stereotypical pronoun)
            items.append({"occupation": OCCUPATIONS[i], "stereotype": "male" if male else "female", "he": he,
                          "she": she, "skew": (he if male else she) / (he + she) if he + she else None})
        return items


def generate(path_jsonl: str | os.PathLike, config: MicroPileConfig | None = None,
             ground_truth_path: str | os.PathLike | None = None) -> dict:
    """Write the corpus (`{"text": ...}` per line) and its ground truth JSON; return the ground truth.

    The ground truth defaults to ``NAME.ground_truth.json`` beside ``NAME.jsonl``. Both files
    appear together (atomic rename) or not at all.
    """
    cfg = config or MicroPileConfig()
    _check(cfg)
    path = Path(path_jsonl)
    if path.suffix != ".jsonl":
        raise UserError(f"the micro-Pile is written as a .jsonl file (NAME.jsonl); got {path}")
    gt_path = Path(ground_truth_path) if ground_truth_path else default_ground_truth_path(path)
    rng = np.random.default_rng(cfg.seed)
    lex = _build_lexicon(rng, cfg)
    canaries, events = _canaries(rng, lex, cfg)
    canary_lines = [_jsonl(c["text"]) for c in canaries]
    if (canary_bytes := sum(len(canary_lines[cid]) for _, cid in events)) > MAX_CANARY_SHARE * cfg.target_bytes:
        raise UserError(f"the canaries alone take {canary_bytes} bytes, over half of target_bytes {cfg.target_bytes}; "
                        "raise target_bytes or use fewer/shorter canaries")
    thresholds = [u * cfg.target_bytes for u, _ in events]
    probs = [1 - cfg.arithmetic_fraction - cfg.occupation_fraction, cfg.arithmetic_fraction, cfg.occupation_fraction]
    tally = _Tally()
    n_docs = written = next_event = 0
    sha = hashlib.sha256()
    with atomic_outputs(path, gt_path) as (tmp, tmp_gt):
        with open(tmp, "wb") as f:
            while written < cfg.target_bytes:
                kind = rng.choice(len(KINDS), size=DOCS_PER_BLOCK, p=probs)
                n_of = np.bincount(kind, minlength=len(KINDS)).tolist()
                ar, oc = _arithmetic_docs(rng, lex, n_of[1]), _occupation_docs(rng, cfg, n_of[2])
                sources = [iter(_background_docs(rng, lex, cfg, n_of[0])), iter(ar.docs), iter(oc.docs)]
                used, out = [0, 0, 0], []
                for k in kind.tolist():
                    out.append(_jsonl(next(sources[k])))
                    written += len(out[-1])
                    used[k] += 1
                    n_docs += 1
                    # canaries due by now go right after this document
                    while next_event < len(events) and thresholds[next_event] <= written:
                        cid = events[next_event][1]
                        out.append(canary_lines[cid])
                        written += len(canary_lines[cid])
                        canaries[cid]["documents"].append(n_docs)
                        n_docs += 1
                        next_event += 1
                    if written >= cfg.target_bytes:
                        break
                tally.add(used, ar, oc)
                data = "".join(out).encode("ascii")
                f.write(data)
                sha.update(data)
        tally.by_kind["canary"] = next_event
        truth = {
            "format": GROUND_TRUTH_FORMAT,
            "config": asdict(cfg),
            "corpus": {"file": path.name, "sha256": sha.hexdigest(), "n_bytes": written, "n_documents": n_docs,
                       "documents_by_kind": tally.by_kind},
            "canaries": canaries,
            "arithmetic": {
                "forms": ARITHMETIC_FORMS, "x1_range": [0, X1_VALUES - 1], "x2_range": list(X2_RANGE),
                "x1_by_frequency_rank": lex.x1_by_rank.tolist(),
                "x1_counts": {op: tally.x1[i].tolist() for i, op in enumerate(ARITHMETIC_FORMS)},  # index = x1
                "number_counts": tally.numbers.tolist(),  # index = number
            },
            "occupations": {"templates": list(OCCUPATION_TEMPLATES), "pronoun_skew": cfg.pronoun_skew,
                            "items": tally.occupations()},
        }
        Path(tmp_gt).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


def load_ground_truth(path: str | os.PathLike) -> dict:
    """The ground truth written by `generate`, checked to be one."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"micro-Pile ground truth not found: {p}")
    try:
        truth = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        truth = None
    if not isinstance(truth, dict) or truth.get("format") != GROUND_TRUTH_FORMAT:
        raise UserError(f"{p} is not a micro-Pile ground truth (expected format {GROUND_TRUTH_FORMAT!r})")
    return truth


def documents_without_canaries(path: str | os.PathLike, truth: dict):
    """The corpus' document texts in order, leaving out every canary copy: what the demo trains
    its tokenizer on, so a canary's copy count cannot change how it is tokenized."""
    skip = {d for c in truth["canaries"] for d in c["documents"]}
    with open(path, encoding="ascii") as f:
        for i, line in enumerate(f):
            if i not in skip:
                yield json.loads(line)["text"]
