"""The localisation scores of a visualize folder in plain words: the reading under the report's
score table, the names of the methods, the randomisation check's verdict and the Markdown
summary's line (:func:`inside_line`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.report.facts import integer
from cnnlab.visualize.methods import REGISTRY

SANITY_LIMIT = 0.5
"""A method passes the randomisation check when the mean rank correlation between its maps
for the trained and for a re-initialised model is below this."""

METHOD_NAMES = {**{name: m.title for name, m in REGISTRY.items()}, "random": "random (reference)"}
"""How the reading and the score table name each method (its title) and the random reference."""

SCORE_HEADERS = {
    "pointing": "pointing game ↑",
    "pointing_1px": "within 1 px ↑",
    "energy": "energy in mask ↑",
    "topk_iou": "top-k IoU ↑",
    "deletion": "deletion area ↓",
    "insertion": "insertion area ↑",
    "rank_corr_random": "rank corr. with random weights ↓",
}
"""The score table's column headings, each with the way it is better (↑ higher, ↓ lower)."""


def method_name(row: Mapping[str, Any]) -> str:
    """``Guided Grad-CAM at pool1`` or ``saliency``."""
    name = METHOD_NAMES.get(row["method"], str(row["method"]))
    return f"{name} at {row['layer']}" if row.get("layer") else name


def passes(row: Mapping[str, Any]) -> bool | None:
    """The randomisation check of one row (None: not measured)."""
    rho = row.get("rank_corr_random")
    return None if rho is None else rho < SANITY_LIMIT


def is_reference(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` is the random reference (chance level), not a method."""
    return row.get("method") == "random"


def best_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The row whose maps point at the object best (pointing game, then energy, then IoU)."""
    scored = [r for r in rows if r.get("pointing") is not None and not is_reference(r)]
    if not scored:
        return None
    return max(
        scored, key=lambda r: tuple(r.get(k) or 0.0 for k in ("pointing", "energy", "topk_iou"))
    )


def by_head(rows: Sequence[Mapping[str, Any]]) -> dict[str | None, list[Mapping[str, Any]]]:
    groups: dict[str | None, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("head"), []).append(row)
    return groups


def score_reading(scores: Mapping[str, Any]) -> list[str]:
    """The score table in a few plain sentences, every figure taken from ``scores``; the
    sentences on the line (pointing at it, heat on it) only where the data has masks."""
    rows = scores["rows"]
    n = integer(scores.get("images"))
    groups = by_head(rows)
    sentences = _one_output(rows, n) if len(groups) == 1 else _per_head(groups, n)
    sentences += faithfulness_reading(scores)
    sentences.append(_sanity_summary(rows))
    return [s for s in sentences if s]


def _one_output(rows: Sequence[Mapping[str, Any]], n: str) -> list[str]:
    best = best_row(rows)
    if best is None:
        return []
    sentences = [
        f"{_cap(method_name(best))} points at the line best: its hottest pixel is on the line "
        f"in {_pct(best['pointing'])} of {n} test images ({_pct(best['pointing_1px'])} within "
        f"1 px), and {_pct(best['energy'])} of its positive heat falls on the line"
        f"{_sanity_clause(best, rows)}."
    ]
    top = _most_concentrated(rows)
    if top is not best and top.get("energy"):
        sentences.append(
            f"The most concentrated map is {method_name(top)}: {_pct(top['energy'])} of its "
            f"heat on the line, top-k IoU {_decimal(top.get('topk_iou'))}, pointing game "
            f"{_pct(top.get('pointing'))}."
        )
    cams = [r for r in rows if r["method"] == "gradcam" and r.get("pointing") is not None]
    if len(cams) > 1:
        high = max(cams, key=lambda r: r["pointing"])
        low = min(cams, key=lambda r: r["pointing"])
        sentences.append(
            f"Plain Grad-CAM points best at {high['layer']} ({_pct(high['pointing'])}) and "
            f"worst at {low['layer']} ({_pct(low['pointing'])})."
        )
    return sentences


def _per_head(groups: Mapping[Any, Sequence[Mapping[str, Any]]], n: str) -> list[str]:
    """One sentence per method that is some head's best pointer, and one on concentration."""
    bests = {head: best_row(group) for head, group in groups.items()}
    winners: dict[str, list[Any]] = {}
    for head, best in bests.items():
        if best is not None:
            winners.setdefault(method_name(best), []).append(head)
    sentences = []
    for name, heads in winners.items():
        rows = [bests[h] for h in heads]
        which = "every head" if len(heads) == len(groups) else joined([f"{h}" for h in heads])
        hits = ", ".join(f"{h} {_pct(r['pointing'])}" for h, r in zip(heads, rows, strict=True))
        failing = [h for h, r in zip(heads, rows, strict=True) if passes(r) is False]
        checked = any(passes(r) is not None for r in rows)
        verdict = (
            ""
            if not checked
            else "; it passes the randomisation check"
            if not failing
            else f"; it fails the randomisation check for {joined(failing)}"
        )
        sentences.append(
            f"{_cap(name)} points at the line best for {which}: its hottest pixel is on the "
            f"line in {hits} of {n} test images, with {_span([r['energy'] for r in rows])} of "
            f"its positive heat on the line{verdict}."
        )
    concentrated: dict[str, list[str]] = {}
    for head, group in groups.items():
        top = _most_concentrated(group)
        if top is not bests[head] and top.get("energy"):
            concentrated.setdefault(method_name(top), []).append(f"{head} {_pct(top['energy'])}")
    if concentrated:
        listed = "; ".join(f"{k} ({', '.join(v)})" for k, v in concentrated.items())
        sentences.append(f"The maps that keep most heat on the line: {listed}.")
    return sentences


def _most_concentrated(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    return max(rows, key=lambda r: -1.0 if is_reference(r) else r.get("energy") or 0.0)


def faithfulness(row: Mapping[str, Any]) -> float | None:
    """Insertion area minus deletion area: how much the map's order matters to the model."""
    if row.get("insertion") is None or row.get("deletion") is None:
        return None
    return float(row["insertion"]) - float(row["deletion"])


def faithfulness_reading(scores: Mapping[str, Any]) -> list[str]:
    """The faithfulness ranking in words, per head, and whether the masks agree with it."""
    sentences = []
    agreement = {a.get("head"): a for a in scores.get("agreement") or []}
    for head, group in by_head(scores["rows"]).items():
        methods = [r for r in group if not is_reference(r) and faithfulness(r) is not None]
        if not methods:
            continue
        top = max(methods, key=lambda r: faithfulness(r) or 0.0)
        reference = next((r for r in group if is_reference(r)), None)
        chance = (
            f" (random order: {reference['deletion']:.2f} and {reference['insertion']:.2f})"
            if reference and reference.get("deletion") is not None
            else ""
        )
        where = f"For head {head}, " if head else ""
        text = (
            f"{where}{method_name(top)} is the most faithful: deleting its hottest pixels first "
            f"leaves an area of {top['deletion']:.2f} under the class-probability curve, and "
            f"inserting them first {top['insertion']:.2f}{chance}"
        )
        rho = (agreement.get(head) or {}).get("spearman")
        if rho is not None:
            text += (
                f"; the ranking by energy in the mask {_agree(rho)} the ranking by "
                f"faithfulness (Spearman {rho:.2f} over {len(methods)} methods)"
            )
        sentences.append(text + ".")
        sentences.append(_worse_sentence(group, where))
    return [s for s in sentences if s]


def _worse_sentence(group: Sequence[Mapping[str, Any]], where: str) -> str:
    """Which methods delete or insert worse than random maps ("" where none does)."""
    worse = [method_name(r) for r in group if r.get("worse_than_random")]
    if not worse:
        return ""
    one = len(worse) == 1
    names = joined(worse)
    return (
        f"{where}{names if where else _cap(names)} {'does' if one else 'do'} worse than random "
        f"maps on deletion or insertion: {'its' if one else 'their'} order of pixels says less "
        "about the model's answer than chance (marked in the table)."
    )


def _agree(rho: float) -> str:
    if rho >= 0.7:
        return "agrees with"
    if rho >= 0.3:
        return "partly agrees with"
    if rho > -0.3:
        return "is unrelated to"
    return "contradicts"


def _sanity_clause(best: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    verdict = passes(best)
    if verdict is None:
        return ""
    rho = best["rank_corr_random"]
    if verdict:
        return f"; it passes the randomisation check (ρ = {rho:.2f})"
    clause = (
        f"; but it fails the randomisation check (ρ = {rho:.2f}): its maps change too little "
        "when the weights are randomised, so they owe much to the input itself"
    )
    alternative = best_row([r for r in rows if passes(r)])
    if alternative is not None:
        clause += (
            f". The best that passes is {method_name(alternative)} "
            f"({_pct(alternative['pointing'])} on the line, ρ = "
            f"{alternative['rank_corr_random']:.2f})"
        )
    return clause


def _sanity_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    checked = [r for r in rows if passes(r) is not None]
    if not checked:
        return ""
    good = [r for r in checked if passes(r)]
    failing = sorted({method_name(r) for r in checked if not passes(r)})
    text = (
        f"Randomisation check (the maps of a copy with re-initialised weights should differ: "
        f"mean rank correlation below {SANITY_LIMIT}): {len(good)} of {len(checked)} rows pass"
    )
    if failing and len(failing) <= 4:
        text += f"; {', '.join(failing)} fail{'s' if len(failing) == 1 else ''}"
    return text + "."


def inside_line(scores: Mapping[str, Any] | None) -> str | None:
    """One line for the Markdown summary: the best localisation figure of a visualize
    folder's ``scores`` (None: no scores)."""
    if scores is None:
        return None
    groups = by_head(scores["rows"])
    bests = {head: best_row(group) for head, group in groups.items()}
    parts = [
        f"{head + ': ' if head else ''}{method_name(best)}, pointing game "
        f"{best['pointing']:.3f}, energy in mask {best['energy']:.3f}"
        + ("" if passes(best) is None else f", randomisation check {_verdict(best)}")
        for head, best in bests.items()
        if best is not None
    ]
    if not parts:
        return None
    n = integer(scores.get("images"))
    return f"looking inside, best localisation on {n} test images: " + "; ".join(parts)


def _verdict(row: Mapping[str, Any]) -> str:
    return f"{'passed' if passes(row) else 'failed'} (ρ {row['rank_corr_random']:.2f})"


def _decimal(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


def _pct(value: Any) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, int | float) else "–"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def joined(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _span(values: Sequence[float]) -> str:
    """``42%`` or ``13–17%``."""
    low, high = round(100 * min(values)), round(100 * max(values))
    return f"{low}%" if low == high else f"{low}–{high}%"
