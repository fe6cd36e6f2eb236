"""PNG plots of benchmark results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first


def bars(path: Path, title: str, values: Mapping[str, float], ylabel: str = "seconds") -> Path:
    """A bar chart of named values, each bar labelled with its value."""
    figure, axes = plt.subplots(figsize=(7, 4))
    names, heights = list(values), [float(v) for v in values.values()]
    drawn = axes.bar(names, heights, color="#4878a8")
    axes.bar_label(drawn, labels=[f"{h:.2f}" for h in heights])
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    figure.tight_layout()
    return _save(figure, path)


def grouped_percentiles(path: Path, title: str, groups: Mapping[str, Mapping[str, float | None]]) -> Path:
    """Per group (e.g. an agent) bars of p50/p95/p99 seconds side by side."""
    return grouped_bars(path, title, groups, ("p50", "p95", "p99"))


def grouped_bars(
    path: Path,
    title: str,
    groups: Mapping[str, Mapping[str, float | None]],
    keys: Sequence[str],
    limits: Mapping[str, float] | None = None,
) -> Path:
    """Per group bars of each key's seconds side by side, with an optional limit drawn over each group."""
    names = list(groups)
    figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    width = 0.8 / len(keys)
    for index, key in enumerate(keys):
        xs = [i + index * width for i in range(len(names))]
        axes.bar(xs, [float(groups[n].get(key) or 0.0) for n in names], width, label=key)
    for i, name in enumerate(names):
        if limits and name in limits:
            span = (i - width / 2, i + (len(keys) - 0.5) * width)
            axes.hlines(limits[name], *span, colors="#c03030", linestyles="dashed")
    axes.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(names))], names)
    axes.set_ylabel("seconds")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    return _save(figure, path)


def cdf(path: Path, title: str, series: Mapping[str, Sequence[float]], xlabel: str = "seconds") -> Path:
    """Cumulative distribution of each series (share of samples at or under x)."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, values in series.items():
        ordered = sorted(values)
        if ordered:
            shares = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axes.step(ordered, shares, where="post", label=f"{name} (n={len(ordered)})")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("share of samples")
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return _save(figure, path)


def timeline(path: Path, title: str, points: Sequence[tuple[float, float]], ylabel: str) -> Path:
    """A scatter of (seconds since start, value), e.g. each request's latency over a load run."""
    figure, axes = plt.subplots(figsize=(8, 4))
    if points:
        axes.scatter([p[0] for p in points], [p[1] for p in points], s=8, alpha=0.6)
    axes.set_xlabel("seconds since start")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
