"""The report's plots, drawn with matplotlib as SVG files the pages embed (no JavaScript, no
server: they open from disk and print well). Same data, same bytes: SVG ids are salted with a
constant and the file carries no date."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rescue_pipeline.quality.kri import Assessed
from rescue_pipeline.report.data import Flow, SiteReport

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


def _box(ax: Any, x: float, y: float, text: str, *, tone: str = "#eef1f5") -> None:
    frame = {"boxstyle": "round,pad=0.5", "facecolor": tone, "edgecolor": "#8a94a6"}
    ax.text(x, y, text, ha="center", va="center", fontsize=8, bbox=frame)


def _arrow(ax: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "->", "color": "#4a5568", "lw": 1})  # fmt: skip


def _top(counts: Mapping[str, int], limit: int = 4) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"{code}: {n}" for code, n in items[:limit]]
    if len(items) > limit:
        lines.append(f"+{len(items) - limit} more criteria")
    return "\n".join(lines) if lines else "none recorded"


def flow_plot(flow: Flow, path: Path) -> Path:
    """Screening to randomisation as a CONSORT-style diagram: screened, then randomised and the
    allocation on the main line; to the side, how the screened divide by derived eligibility
    (with the criteria most often behind "not eligible" and "unknown"; a subject may fail
    several) and how many of each were randomised all the same."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.axis("off")
    _box(ax, 2.4, 9.3, f"Screened\n{flow.screened:,} subjects")
    _box(ax, 7.3, 9.0, f"Eligible: {flow.eligible:,}\n"
         f"randomised {flow.randomised_eligible:,}, not {flow.eligible_not_randomised:,}",
         tone="#eef6ee")  # fmt: skip
    _box(ax, 7.3, 6.5, f"Not eligible: {flow.not_eligible:,}\n"
         f"randomised all the same: {flow.randomised_not_eligible:,}\n{_top(flow.failed_by, 3)}",
         tone="#fbeee6")  # fmt: skip
    _box(ax, 7.3, 3.4, f"Eligibility unknown (missing data): {flow.unknown:,}\n"
         f"randomised all the same: {flow.randomised_unknown:,}\n{_top(flow.unknown_by, 3)}",
         tone="#fdf6e3")  # fmt: skip
    _box(ax, 2.4, 4.4, f"Randomised\n{flow.randomised:,}", tone="#e6f0fa")
    arms = sorted(flow.by_arm.items())
    for i, (arm, n) in enumerate(arms):
        x = 1.1 + 2.6 * i if len(arms) > 1 else 2.4
        _box(ax, x, 1.2, f"Allocated to {arm}\n{n:,}", tone="#e6f0fa")
        _arrow(ax, (2.4, 3.9), (x, 1.7))
    _arrow(ax, (2.4, 8.8), (2.4, 4.9))
    for y in (9.0, 6.5, 3.4):  # the screened divide by eligibility
        _arrow(ax, (3.3, 9.2), (5.2, y))
    ax.set_title("Screening to randomisation (CONSORT style)", fontsize=10)
    return _save(fig, path)


def _quarters(first: str, last: str) -> list[str]:
    """Every quarter from `first` to `last` (YYYY-Qn), none skipped."""
    year, q = int(first[:4]), int(first[-1])
    out = []
    while (year, q) <= (int(last[:4]), int(last[-1])):
        out.append(f"{year}-Q{q}")
        year, q = (year + 1, 1) if q == 4 else (year, q + 1)
    return out


def enrolment_plot(enrolment: Mapping[str, Sequence[tuple[str, int]]], path: Path) -> Path:
    """Subjects randomised, cumulative by quarter, per site and in all (counts only); the axis
    runs through every quarter, so a pause in enrolment shows as one."""
    fig, ax = _figure(7, 3.0)
    seen = sorted({m for rows in enrolment.values() for m, _ in rows})
    months = _quarters(seen[0], seen[-1]) if seen else []
    index = {m: i for i, m in enumerate(months)}
    total = [0] * len(months)
    for site, rows in sorted(enrolment.items()):
        per_month = [0] * len(months)
        for month, n in rows:
            per_month[index[month]] += n
        cumulative = list(accumulate(per_month))
        total = [t + c for t, c in zip(total, cumulative, strict=True)]
        ax.step(range(len(months)), cumulative, where="post", label=site)
    if months:
        ax.step(range(len(months)), total, where="post", label="all sites", color="#1d2430",
                linewidth=2)  # fmt: skip
        ax.set_xlim(-0.5, len(months) - 0.5)  # the last quarter's step is seen whole
        step = max(len(months) // 10, 1)
        ax.set_xticks(range(0, len(months), step), [months[i] for i in range(0, len(months), step)])
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no subject randomised yet", transform=ax.transAxes, ha="center")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("subjects randomised (cumulative)")
    ax.set_title("Enrolment over time")
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def kri_plot(kris: Sequence[Assessed], path: Path) -> Path:
    """Each site against the rest of the study, per indicator: its z-score (funnel limits at 2
    and 3), so a site that stands out is seen at a glance. Indicators in days are judged
    against their threshold instead and are in the table only."""
    scored = [k for k in kris if k.indicator.kind != "days"]
    fig, ax = _figure(7, 0.45 * max(len(scored), 3) + 1.0)
    ax.axvspan(-4.5, 2, color="#e8f5e9", zorder=0)
    ax.axvspan(2, 3, color="#fff4d6", zorder=0)
    ax.axvspan(3, 8, color="#fde2e1", zorder=0)
    site_ids = sorted({v.site_id for k in scored for v in k.sites})
    palette = matplotlib.colormaps["tab10"]
    colour = {site: palette(i % 10) for i, site in enumerate(site_ids)}
    offset = {site: (i - (len(site_ids) - 1) / 2) * 0.12 for i, site in enumerate(site_ids)}
    for row, assessed in enumerate(scored):
        for v in assessed.sites:
            if v.value is None:
                continue
            # no spread (nothing anywhere, or everything): on the study value, hollow
            z = 0.0 if v.z is None else max(min(v.z, 7.5), -4.3)  # off-scale at the edge
            style = {"markersize": 9, "markeredgecolor": "#c53030", "markeredgewidth": 2} if (
                v.flag in ("warn", "flag")) else {"markersize": 6}  # fmt: skip
            ax.plot(z, row + offset[v.site_id], "o", zorder=3,
                    color=colour[v.site_id] if v.z is not None else "none",
                    markeredgecolor=style.pop("markeredgecolor", colour[v.site_id]),
                    **style)  # fmt: skip
    for site in site_ids:
        ax.plot([], [], "o", color=colour[site], label=site)
    if site_ids:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="site")
    ax.set_yticks(range(len(scored)), [k.indicator.title for k in scored])
    ax.set_ylim(-0.7, max(len(scored), 1) - 0.3)
    ax.invert_yaxis()
    highest = max((v.z for k in scored for v in k.sites if v.z is not None), default=0.0)
    ax.set_xlim(-4.5, min(max(4.5, highest + 1.0), 8.0))
    ax.set_xlabel("z-score against the study-wide value (right of 3: the site stands out)")
    ax.set_title("Key risk indicators: sites against the study")
    return _save(fig, path)


def completeness_heatmap(sites: Sequence[SiteReport], path: Path) -> Path:
    """Share filled of each key field per site (latest run): gaps show as pale cells."""
    fields = sorted({key for s in sites for key in s.completeness})
    rows = [s for s in sites if s.completeness]
    grid = [
        [
            100 * s.completeness[f][1] / s.completeness[f][0]
            if f in s.completeness and s.completeness[f][0]
            else float("nan")
            for f in fields
        ]
        for s in rows
    ]
    fig, ax = _figure(max(0.42 * len(fields) + 2.0, 5), 0.45 * max(len(rows), 2) + 2.2)
    if rows and fields:
        # 80-100 % spread over the whole scale: 94 and 100 must not look alike; below 80 is red
        image = ax.imshow(grid, cmap="RdYlGn", vmin=80, vmax=100, aspect="auto")
        for r, values in enumerate(grid):
            for c, v in enumerate(values):
                if v == v:  # not NaN
                    ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="#1d2430")  # fmt: skip
        labels = [f"{t.removeprefix('core.')}.{f}" for t, f in fields]
        ax.set_xticks(range(len(fields)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), [s.site_id for s in rows])
        fig.colorbar(image, ax=ax, label="% filled (80 % or less: red)", fraction=0.03, pad=0.02)
    else:
        ax.text(0.5, 0.5, "no quality run yet", transform=ax.transAxes, ha="center")
    ax.set_title("Completeness of key fields (site x field, latest quality run)")
    return _save(fig, path)
