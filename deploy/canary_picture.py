"""The canary's picture: success rate and median latency of every revision over the analyses, as a PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first


def draw(path: Path, title: str, timeline: Sequence[Mapping[str, Any]]) -> Path:
    """Per service and revision, success rate and median ms of each analysis (the window so far)."""
    figure, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    series: dict[str, list[tuple[float, Mapping[str, Any]]]] = {}
    for point in timeline:
        for service, revisions in point["services"].items():
            for revision, figures in revisions.items():
                series.setdefault(f"{service} {revision}", []).append((float(point["t"]), figures))
    for label, rows in sorted(series.items()):
        axes[0].plot([t for t, _ in rows], [f["success"] for _, f in rows], marker=".", label=label)
        axes[1].plot([t for t, _ in rows], [f["median_ms"] for _, f in rows], marker=".", label=label)
    axes[0].set_ylabel("success rate (window so far)")
    axes[1].set_ylabel("median ms (window so far)")
    axes[1].set_xlabel("seconds since the first step")
    axes[0].set_title(title)
    axes[0].legend(fontsize=6, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
