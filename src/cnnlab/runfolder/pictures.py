"""The visualize folder of a run: what ``cnnlab visualize`` drew, read and checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.runfolder.records import format_of, read_json

VISUALIZE_SUMMARY = "summary.json"
"""The visualize folder's record of what it drew (see cnnlab.visualize)."""

VISUALIZE_SCORES = "scores.json"
"""The visualize folder's localisation scores."""

VISUALIZE_INPUTS = "inputs.npy"
"""The visualize folder's explained images, uint8 (N, C, H, W)."""

SCORE_KEYS = ("pointing", "pointing_1px", "energy", "topk_iou")
"""The localisation scores of each row of ``scores.json`` (``rank_corr_random`` besides)."""


@dataclass(frozen=True)
class Pictures:
    """A checked visualize folder: its summary, its scores (None: not made, or unreadable),
    notes on what cannot be shown, and whether it is older than the model (``stale``)."""

    folder: Path
    summary: dict[str, Any]
    scores: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    stale: bool = False

    @property
    def outdated(self) -> bool:
        """Scores from before the scoreboard (no faithfulness, no random reference, no
        agreement): an older cnnlab's; made again where pictures are made."""
        return self.scores is not None and "agreement" not in self.scores

    def png(self, recorded: Any) -> Path:
        """A picture named in the summary, found in this folder (the run may have moved)."""
        return self.folder / Path(str(recorded)).name

    @property
    def inputs(self) -> Path:
        return self.folder / VISUALIZE_INPUTS

    @property
    def layers(self) -> list[str]:
        return list(self.summary["layers"])


def read_pictures(folder: Path, weights: Path | None = None) -> Pictures | None:
    """A visualize folder, checked; None when it has no summary. A one-line
    :class:`CnnlabError` when the summary is unreadable, from an older cnnlab, or names
    pictures that are missing (an interrupted run). ``weights``: the model they must not be
    older than."""
    folder = Path(folder)
    path = folder / VISUALIZE_SUMMARY
    if not path.is_file():
        return None
    summary = read_json(path, part=True)
    format_of(summary, path.name)
    _check_pictures(summary, folder)
    notes = []
    scores = None
    if summary.get("scores_json"):
        try:
            scores = read_json(folder / VISUALIZE_SCORES, part=True)
            _check_scores(scores)
        except CnnlabError as exc:
            scores = None
            notes.append(f"The localisation scores are left out: {exc}.")
    stale = weights is not None and weights.is_file()
    stale = stale and path.stat().st_mtime < weights.stat().st_mtime  # type: ignore[union-attr]
    if stale:
        notes.append(
            f"These pictures are older than the run's {weights.name}: make them again with "
            "cnnlab visualize (or cnnlab report --inside)."
        )
    return Pictures(folder, summary, scores, tuple(notes), stale)


def _check_pictures(summary: dict[str, Any], folder: Path) -> None:
    """Every part a report shows is there, and every picture the summary names exists."""
    name = VISUALIZE_SUMMARY
    for key, kind in (("layers", list), ("images", dict), ("activations", dict)):
        if not isinstance(summary.get(key), kind):
            raise CnnlabError(f"{name} has no {key!r} (written by an older cnnlab?)")
    heatmaps = summary.get("heatmaps")
    if not isinstance(heatmaps, dict) or not heatmaps:
        raise CnnlabError(f"{name} has no heatmaps (written by an older cnnlab?)")
    filters = summary.get("filters") or {}
    if not isinstance(filters, dict):
        raise CnnlabError(f"{name}: 'filters' is not a table of layers")
    entries = [*summary["activations"].values(), *filters.values()]
    pictures = [entry.get("png") if isinstance(entry, dict) else None for entry in entries]
    for entry in heatmaps.values():  # its pictures: one per picture of the methods drawn
        pictures += [p for p in entry.values() if _png(p)] if isinstance(entry, dict) else [None]
    for picture in pictures:
        if not isinstance(picture, str):
            raise CnnlabError(f"{name} names a picture without a file")
        if not (folder / Path(picture).name).is_file():
            raise CnnlabError(f"{Path(picture).name} is missing (an interrupted run?)")


def _png(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(".png")


def _check_scores(scores: dict[str, Any]) -> None:
    name = VISUALIZE_SCORES
    rows = scores.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "method" in r for r in rows):
        raise CnnlabError(f"{name} has no rows")
    for row in rows:
        for key in (*SCORE_KEYS, "rank_corr_random"):
            if row.get(key) is not None and not isinstance(row[key], int | float):
                raise CnnlabError(f"{name}: {key} is not a number")
