"""The report's plots, drawn with matplotlib as SVG files the pages embed (no JavaScript, no
server: they open from disk and print well). Same data, same bytes: SVG ids are salted with a
constant and the file carries no date."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rescue_pipeline.report.data import SiteReport

ACCEPTED, QUARANTINED = "#2b6cb0", "#c05621"
matplotlib.rcParams["svg.hashsalt"] = "rescue-report"
matplotlib.rcParams["font.size"] = 9


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    """A figure outside pyplot: no global state, no display backend needed."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), "utf-8")
    return path


def _load_labels(site: SiteReport) -> list[str]:
    return [f"{x.started_at:%Y-%m-%d %H:%M}" for x in site.loads]


def loads_plot(site: SiteReport, path: Path) -> Path:
    """Lines read at each load: new versions, newly quarantined, and lines held already (a
    full reload's re-reads), so new data and re-reads are never one bar."""
    fig, ax = _figure(7, 2.8)
    labels = _load_labels(site)
    new = [x.new_versions for x in site.loads]
    quarantined = [x.new_quarantined for x in site.loads]
    held = [x.already_held for x in site.loads]
    ax.bar(labels, new, color=ACCEPTED, label="new versions")
    ax.bar(labels, quarantined, bottom=new, color=QUARANTINED, label="newly quarantined")
    ax.bar(labels, held, bottom=[a + b for a, b in zip(new, quarantined, strict=True)],
           color="#c9ced6", label="held already")  # fmt: skip
    ax.set_ylabel("lines read")
    ax.set_title(f"{site.site_id}: lines read per load")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def quarantine_plot(site: SiteReport, path: Path) -> Path:
    """Lines first quarantined per load and reason, as a share of the load's new lines."""
    fig, ax = _figure(7, 2.8)
    labels = _load_labels(site)
    reasons = sorted(site.quarantine_by_reason)
    bottom = [0.0] * len(site.loads)
    for reason in reasons:
        shares = [
            100
            * site.quarantine_trend.get(x.load_id, {}).get(reason, 0)
            / (x.new_versions + x.new_quarantined)
            if x.new_versions + x.new_quarantined
            else 0.0
            for x in site.loads
        ]
        ax.bar(labels, shares, bottom=bottom, label=reason)
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.set_ylabel("% of the load's new lines")
    ax.set_title(f"{site.site_id}: lines quarantined per load, by reason")
    if reasons:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
    else:
        ax.text(0.5, 0.5, "no line quarantined", transform=ax.transAxes, ha="center")
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def completeness_plot(site: SiteReport, path: Path) -> Path:
    """Share filled of each key field, latest run (horizontal bars, worst first)."""
    items = sorted(
        ((f"{t.removeprefix('core.')}.{f}", filled / rows if rows else 1.0)
         for (t, f), (rows, filled) in site.completeness.items()),
        key=lambda kv: kv[1], reverse=True,
    )  # fmt: skip
    fig, ax = _figure(7, 0.22 * max(len(items), 4) + 0.8)
    ax.barh([k for k, _ in items], [100 * v for _, v in items], color=ACCEPTED)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of rows with the field filled")
    ax.set_title(f"{site.site_id}: completeness of key fields")
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def completeness_trend_plot(sites: Sequence[SiteReport], path: Path) -> Path:
    """Overall key-field completeness per site at each quality run."""
    fig, ax = _figure(7, 2.8)
    for site in sites:
        trend: Mapping[str, float] = site.completeness_trend
        if trend:
            ax.plot(
                [t[:16].replace("T", " ") for t in trend],
                [100 * v for v in trend.values()],
                marker="o",
                label=site.site_id,
            )
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of key fields filled")
    ax.set_title("Completeness of key fields per site, per quality run")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", frameon=False)
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def quarantine_share_plot(sites: Sequence[SiteReport], path: Path) -> Path:
    """Share of lines quarantined per site and load: which site's feed is getting worse."""
    fig, ax = _figure(7, 2.8)
    for site in sites:
        if site.loads:
            ax.plot(
                range(1, len(site.loads) + 1),
                [100 * x.quarantined / x.received if x.received else 0.0 for x in site.loads],
                marker="o",
                label=site.site_id,
            )
    ax.set_xlabel("load (1 = first)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("% of lines quarantined")
    ax.set_title("Quarantined share per site and load")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", frameon=False)
    ax.set_ylim(bottom=0)
    return _save(fig, path)
