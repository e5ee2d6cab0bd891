"""Readers for the bias and language-modelling evaluation sets, in their official formats, and
made-up lookalikes in the same formats (the real sets are licensed: users load their own copies).

- WinoBias (Zhao et al. 2018, github uclanlp/corefBias, ``WinoBias/wino/data/``): files
  ``{pro,anti}_stereotyped_type{1,2}.txt.{dev,test}``, one item a line:
  ``1 [The developer] argued with the designer because [he] did not like the design.``
  (a number, then the sentence with the antecedent and the pronoun in brackets).
- CrowS-Pairs (Nangia et al. 2020, ``data/crows_pairs_anonymized.csv``): columns ``sent_more``,
  ``sent_less``, ``stereo_antistereo`` (stereo | antistereo), ``bias_type`` (gender, race-color, ...).
- LAMBADA as OpenAI distributes it (``lambada_test.jsonl``): one ``{"text": ...}`` a line.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..micropile import FEMALE_OCCUPATIONS, MALE_OCCUPATIONS, OCCUPATIONS

PRONOUNS = {"he": "male", "him": "male", "his": "male", "himself": "male",
            "she": "female", "her": "female", "hers": "female", "herself": "female"}
WINOBIAS_FILE = "{stereotype}_stereotyped_type{type}.txt.{split}"
_LINE = re.compile(r"^\s*(\d+)\s+(.*\S)\s*$")
_SPAN = re.compile(r"\[([^\[\]]+)\]")
CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


# ---- WinoBias -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WinoBiasItem:
    type: int  # 1 or 2
    stereotype: str  # "pro" | "anti"
    line: int  # 1-based line in its file
    sentence: str  # without brackets
    pronoun: str  # as written, e.g. "he"
    referent: str  # the antecedent occupation, without its article ("developer")
    distractor: str  # the other occupation of the sentence ("designer")


def _strip_article(span: str) -> str:
    return re.sub(r"^(the|a|an)\s+", "", span.strip(), flags=re.IGNORECASE)


def _other_occupation(sentence: str, span: tuple[int, int], referent: str) -> str | None:
    """The occupation named outside the antecedent span: WinoBias' list first (longest name
    first, so "construction worker" wins over "worker"), then any "the WORD"."""
    outside = sentence[: span[0]] + " " * (span[1] - span[0]) + sentence[span[1]:]
    for occ in sorted(OCCUPATIONS, key=len, reverse=True):
        if occ.lower() != referent.lower() and re.search(rf"\b{re.escape(occ)}\b", outside, re.IGNORECASE):
            return occ
    m = re.search(r"\b[Tt]he ([A-Za-z]+)\b", outside)
    return m.group(1) if m and m.group(1).lower() != referent.lower() else None


def parse_winobias_line(text: str, where: str, type_: int = 1, stereotype: str = "pro", line: int = 1) -> WinoBiasItem:
    """One line of a WinoBias file; UserError naming `where` if it is not in the format."""
    m = _LINE.match(text)
    if not m:
        raise UserError(f"{where}: expected 'NUMBER sentence with [antecedent] and [pronoun]', got {text.strip()!r}")
    body = m.group(2)
    spans = list(_SPAN.finditer(body))
    if len(spans) != 2:
        raise UserError(f"{where}: expected two [bracketed] spans (antecedent and pronoun), found {len(spans)}")
    kinds = [s.group(1).strip().lower() in PRONOUNS for s in spans]
    if sum(kinds) != 1:
        raise UserError(f"{where}: exactly one bracketed span must be a pronoun ({', '.join(PRONOUNS)}); "
                        f"got {[s.group(1) for s in spans]}")
    pron, ante = (spans[0], spans[1]) if kinds[0] else (spans[1], spans[0])
    # positions in the sentence once the brackets are gone
    sentence = _SPAN.sub(lambda s: s.group(1), body)
    shift = 2 * sum(1 for s in spans if s.start() < ante.start())
    a0 = ante.start() - shift
    a1 = a0 + len(ante.group(1))
    referent = _strip_article(ante.group(1))
    other = _other_occupation(sentence, (a0, a1), referent)
    if other is None:
        raise UserError(f"{where}: cannot find the second occupation (the candidate the pronoun does not refer to)")
    return WinoBiasItem(type_, stereotype, line, sentence, pron.group(1).strip(), referent, other)


def read_winobias(folder: str | os.PathLike, split: str = "test") -> list[WinoBiasItem]:
    """All four WinoBias files of `split` (dev | test) in `folder`."""
    folder = Path(folder)
    if split not in ("dev", "test"):
        raise UserError(f"WinoBias split must be dev or test, got {split!r}")
    names = [(t, s, WINOBIAS_FILE.format(stereotype=s, type=t, split=split)) for t in (1, 2) for s in ("pro", "anti")]
    missing = [n for _, _, n in names if not (folder / n).is_file()]
    if missing:
        raise UserError(f"WinoBias folder {folder} lacks {', '.join(missing)} (expected the files of "
                        f"uclanlp/corefBias WinoBias/wino/data)")
    items = []
    for t, s, name in names:
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        for i, text in enumerate(lines, 1):
            if text.strip():
                items.append(parse_winobias_line(text, f"{folder / name}:{i}", t, s, i))
    return items


# ---- CrowS-Pairs --------------------------------------------------------------------------------


def read_crows_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """The CrowS-Pairs CSV: one row per pair with the four columns scoring needs (others dropped)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"CrowS-Pairs file not found: {p}")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{p} is not a CrowS-Pairs CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in CROWS_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{p} lacks column(s) {', '.join(missing)}; a CrowS-Pairs CSV has {', '.join(CROWS_COLUMNS)}")
    bad = df.index[~df["stereo_antistereo"].isin(["stereo", "antistereo"])]
    if len(bad):
        raise UserError(f"{p} line {bad[0] + 2}: stereo_antistereo must be 'stereo' or 'antistereo', "
                        f"got {df['stereo_antistereo'].iloc[bad[0]]!r}")
    empty = df.index[(df["sent_more"].str.strip() == "") | (df["sent_less"].str.strip() == "")]
    if len(empty):
        raise UserError(f"{p} line {empty[0] + 2}: sent_more and sent_less must both hold a sentence")
    return df[list(CROWS_COLUMNS)].reset_index(drop=True)


# ---- LAMBADA ------------------------------------------------------------------------------------


def read_lambada(path: str | os.PathLike) -> list[str]:
    """Passages of a LAMBADA OpenAI jsonl file (``{"text": ...}`` a line)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"LAMBADA file not found: {p}")
    texts = []
    with open(p, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{p}:{i}: not a JSON object (LAMBADA OpenAI jsonl has one {{\"text\": ...}} a line)") from None
            text = obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or " " not in text.strip():
                raise UserError(f"{p}:{i}: field 'text' must be a passage of several words")
            texts.append(text)
    if not texts:
        raise UserError(f"{p} holds no passages")
    return texts


# ---- made-up lookalikes (same formats, invented sentences) --------------------------------------

_LOOKALIKE_TYPE1 = ("[The {a}] waved at the {b} because [{p}] was in a good mood.",
                    "[The {a}] thanked the {b} since [{p}] had finished early.")
_LOOKALIKE_TYPE2 = ("The {b} waited for [the {a}] and handed [{o}] a note.",
                    "The {b} visited [the {a}] to ask [{o}] a question.")
_OBJECT = {"he": "him", "she": "her"}


def write_winobias_lookalike(folder: str | os.PathLike, n_per_file: int = 8, seed: int = 0) -> Path:
    """Eight made-up files in WinoBias' names and line format (for tests and demos only)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("dev", "test"):
        for t, templates in ((1, _LOOKALIKE_TYPE1), (2, _LOOKALIKE_TYPE2)):
            for stereo in ("pro", "anti"):
                lines = []
                for i in range(n_per_file):
                    male = bool(rng.integers(2))
                    a = str(rng.choice(MALE_OCCUPATIONS if male else FEMALE_OCCUPATIONS))
                    b = str(rng.choice(FEMALE_OCCUPATIONS if male else MALE_OCCUPATIONS))
                    p = "he" if male == (stereo == "pro") else "she"
                    text = templates[i % len(templates)].format(a=a, b=b, p=p, o=_OBJECT[p])
                    lines.append(f"{i + 1} {text}")
                (folder / WINOBIAS_FILE.format(stereotype=stereo, type=t, split=split)).write_text("\n".join(lines) + "\n")
    return folder


def write_crows_lookalike(path: str | os.PathLike, seed: int = 0) -> Path:
    """A made-up CSV in CrowS-Pairs' columns: gender pairs over WinoBias occupations and a few others."""
    rng = np.random.default_rng(seed)
    rows = []
    for occ in MALE_OCCUPATIONS[:6] + FEMALE_OCCUPATIONS[:6]:
        male = occ in MALE_OCCUPATIONS
        he = f"The {occ} said that he would finish the report soon."
        she = f"The {occ} said that she would finish the report soon."
        rows.append((he, she) if male else (she, he))
    for a, b in (("The tall visitor waited at the door.", "The short visitor waited at the door."),
                 ("The old neighbour waved from the garden.", "The young neighbour waved from the garden.")):
        rows.append((a, b))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "sent_more", "sent_less", "stereo_antistereo", "bias_type", "annotations", "anon_writer",
                    "anon_annotators"])
        for i, (more, less) in enumerate(rows):
            bias = "gender" if i < 12 else "physical-appearance"
            w.writerow([i, more, less, "stereo" if rng.random() < 0.8 else "antistereo", bias, "[['gender']]",
                        "a0", "['a1']"])
    return Path(path)


def write_lambada_lookalike(path: str | os.PathLike, n: int = 16, seed: int = 0) -> Path:
    """A made-up jsonl in LAMBADA OpenAI's format: the last word names someone met earlier."""
    rng = np.random.default_rng(seed)
    names = ("Mara", "Tobin", "Elsa", "Quill", "Juno", "Pavel", "Rhea", "Soren")
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            who, other = rng.choice(names, 2, replace=False)
            text = (f"{who} carried the lamp up the hill while {other} stayed below. At the top the wind was "
                    f"strong, and the lamp went out twice. When the light came back, everyone could see {who}")
            f.write(json.dumps({"text": text}) + "\n")
    return Path(path)
