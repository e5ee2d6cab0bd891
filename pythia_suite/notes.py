"""Notes on degenerate results: the sentences an analysis adds to its summary line and to its
tables' metadata (``notes``) when a number would look like a finding but is not one — nothing
memorized, accuracy at floor or indistinguishable from chance, an intervention whose weights are
its parent's, an interval that resampling cannot move.

    from pythia_suite.notes import accuracy_note
    accuracy_note("micro-1m step 64 times 0-shot", k=0, n=300)   # "... accuracy 0 / 300: at floor ..."

Reports and notebooks print the notes (`read_table(path).attrs["notes"]`) instead of the numbers
they qualify.
"""

from __future__ import annotations

ALPHA = 0.05  # a share whose two-sided binomial test against chance has p >= ALPHA "is at chance"


def accuracy_note(label: str, k: int, n: int, chance: float | None = None) -> str | None:
    """A note when `k` correct of `n` is at floor (0), or, given the chance level of the task, not
    distinguishable from it (two-sided exact binomial test, p >= 0.05); otherwise None."""
    k, n = int(k), int(n)
    if n == 0:
        return f"{label}: no items were scored"
    if k == 0:
        return f"{label}: accuracy 0 / {n}, at floor (nothing correct: differences between such cells are not findings)"
    if chance is not None:
        from scipy.stats import binomtest

        p = float(binomtest(k, n, chance).pvalue)
        if p >= ALPHA:
            return (f"{label}: accuracy {k} / {n} = {k / n:.3f} is not distinguishable from chance {chance:g} "
                    f"(binomial test p = {p:.2f})")
    return None


def accuracy_notes(cells: list[tuple[str, int, int, float | None]], shown: int = 4) -> list[str]:
    """`accuracy_note` over many cells (label, k, n, chance), one note per kind: "at floor in 12
    of 40 cells: a, b, c, d and 8 more"."""
    kinds: dict[str, list[str]] = {}
    for label, k, n, chance in cells:
        note = accuracy_note("", k, n, chance)
        if note:
            kind = ("no items scored" if "no items" in note else "accuracy at floor (nothing correct)" if "at floor" in note
                    else f"accuracy not distinguishable from chance (binomial test p >= {ALPHA})")
            kinds.setdefault(kind, []).append(label)
    return [f"{kind} in {len(labels)} of {len(cells)} cells: {', '.join(labels[:shown])}"
            + (f" and {len(labels) - shown} more" if len(labels) > shown else "") for kind, labels in kinds.items()]


def interval_note(label: str, low: float, high: float, items: int) -> str | None:
    """A note when a resampling interval cannot say anything: it rests on at most one item per
    group, or every resample gave the same value (low == high: all answers alike)."""
    if items <= 1:
        return f"{label}: the interval rests on {items} item(s) per group, so resampling cannot measure its spread"
    if low == high:
        return f"{label}: the interval is a single point ({low:+.3f}): every resample gave the same value"
    return None


def collapse(notes: list[str], limit: int = 6) -> list[str]:
    """The notes without repeats, at most `limit` of them and a count of the rest."""
    unique = list(dict.fromkeys(n for n in notes if n))
    if len(unique) <= limit:
        return unique
    return unique[:limit] + [f"and {len(unique) - limit} more notes of this kind (the table's metadata holds all)"]


def print_notes(notes: list[str], indent: str = "  ") -> None:
    """The notes as summary lines, ``  note: ...``."""
    for n in collapse(notes):
        print(f"{indent}note: {n}")


def show_notes(table) -> None:
    """For notebooks: print a table's notes (``table.attrs["notes"]``, from `read_table`) before
    its numbers, or say that none was recorded."""
    notes = (getattr(table, "attrs", None) or {}).get("notes") or []
    if not notes:
        print("notes: none (no degenerate result recorded for this table)")
        return
    print("Not findings (degenerate results recorded with the table):")
    for n in collapse(notes, limit=12):
        print(f"  - {n}")
