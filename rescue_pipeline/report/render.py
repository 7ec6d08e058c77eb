"""Write the sponsors' report (`sponsors/`) and the sites' data queries (`data-queries/`).

Two folders apart, so the sponsors' pages (counts only) can be sent on without the row-level
listings, which name records and are for each site's own data managers. Each folder is written
beside its final place and renamed over the old one: a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from jinja2 import Environment, PackageLoader, select_autoescape

from rescue_pipeline.quality.kri import Indicator, describe
from rescue_pipeline.raw.structure import REASONS
from rescue_pipeline.report import drawing, plots
from rescue_pipeline.report.data import (
    CRITERION_STATUSES,
    ELIGIBILITY_STATUSES,
    ReportData,
    SiteReport,
    read_report,
)

SPONSORS, QUERIES = "sponsors", "data-queries"
SEVERITY_TEXT = {
    "critical": "Critical: a site failing it is held back from the published warehouse (its "
    "last published data stay) until fixed.",
    "warning": "Warning: reported and sent to the site as data queries; publishing goes on.",
}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "quarantine": 2}


@dataclass
class ReportFiles:
    sponsors: Path
    queries: Path
    pages: list[Path] = field(default_factory=list)
    query_files: dict[str, int] = field(default_factory=dict)  # site → open queries


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("rescue_pipeline.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(
        pct=lambda part, whole: f"{100 * part / whole:.1f}%" if whole else "n/a",
        share=lambda v: "n/a" if v is None else f"{100 * v:.1f}%",
        critical=lambda s: sum(1 for c in s.failed_checks if c.severity == "critical"),
        status_text=_status_text,
        statuses=ELIGIBILITY_STATUSES,
        criterion_statuses=CRITERION_STATUSES,
        reasons=REASONS,
        severity_text=SEVERITY_TEXT,
        kri_value=_kri_value,
        kri_site=lambda assessed, site_id: next(
            (v for v in assessed.sites if v.site_id == site_id), None
        ),
    )
    return env


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders the numbers inside a text by value: file.ndjson:840 before
    file.ndjson:1449, RESCUE-A-0009 before RESCUE-A-0010."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", text) if part)  # fmt: skip


def _kri_value(indicator: Indicator, value: float | None) -> str:
    if value is None:
        return "n/a"
    if indicator.kind == "proportion":
        return f"{100 * value:.1f}%"
    if indicator.kind == "rate":
        return f"{value:.2f}"
    return f"{value:.0f} d"


def _status_text(site: SiteReport) -> str:
    if site.status == "published":
        return "published (this load)"
    if site.status == "held":
        since = site.data_as_of
        return f"held back: data of {since:%Y-%m-%d %H:%M} UTC kept" if since else "held back"
    return site.status


def write_report(warehouse: Path, out: Path, *, study_id: str, site_ids: list[str]) -> ReportFiles:
    """Read the published warehouse (read-only) and write both folders under `out`."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        data = read_report(con, study_id=study_id, site_ids=site_ids)
        findings = con.execute(
            "SELECT site_id, severity, table_name, check_name, record_key, what_is_wrong "
            "FROM quality.findings"
        ).fetchall()
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out / SPONSORS, out / QUERIES)
    files.pages = _swap(files.sponsors, lambda tmp: _sponsor_site(data, tmp))
    by_site: dict[str, list[tuple[str, str, str, str, str]]] = {s.site_id: [] for s in data.sites}
    for site_id, *row in findings:
        by_site.setdefault(site_id, []).append((row[0], row[1], row[2], row[3], row[4]))
    _swap(files.queries, lambda tmp: _query_listings(data, by_site, tmp))
    files.query_files = {site: len(rows) for site, rows in sorted(by_site.items())}
    return files


def _swap(final: Path, write: Callable[[Path], list[Path]]) -> list[Path]:
    """Write into a fresh sibling folder, then put it in place of `final`."""
    tmp = final.with_name(f".{final.name}.next")
    old = final.with_name(f".{final.name}.old")
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    pages = write(tmp)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return [final / p.relative_to(tmp) for p in pages]


def _sponsor_site(data: ReportData, folder: Path) -> list[Path]:
    env = _env()
    css = Path(__file__).with_name("static") / "report.css"
    shutil.copyfile(css, folder / "report.css")
    overview = {
        "flow": "plots/flow.svg",
        "enrolment": "plots/enrolment.svg",
        "kri": "plots/kri.svg",
        "completeness": "plots/completeness.svg",
    }
    written: list[Path] = []
    pages = []

    def page(name: str, template: str, **context: object) -> None:
        path = folder / name
        path.write_text(env.get_template(template).render(data=data, **context), "utf-8")
        pages.append(path)

    page(
        "index.html",
        "index.html.j2",
        title="Overview",
        plots=overview,
        kri_flagged=describe({k.indicator.id: k for k in data.kris}),
    )
    site_plots: list[Callable[[], Path]] = []  # to the drawing process, if one runs
    try:
        written += _pages(data, folder, overview, page, site_plots)
    except BaseException:
        for wait in site_plots:  # nothing is still being drawn into the folder once it raises
            with contextlib.suppress(Exception):
                wait()
        raise
    written += [wait() for wait in site_plots]
    return pages + written


def _pages(
    data: ReportData,
    folder: Path,
    overview: dict[str, str],
    page: Callable[..., None],
    site_plots: list[Callable[[], Path]],
) -> list[Path]:
    """Every page, the overview's plots drawn here and each site's handed to `drawing`
    (their calls added to `site_plots`); the plots drawn here."""
    for site in data.sites:
        names = {
            "loads": f"plots/{site.site_id}-loads.svg",
            "quarantine": f"plots/{site.site_id}-quarantine.svg",
            "completeness": f"plots/{site.site_id}-completeness.svg",
        }
        site_plots += [
            drawing.draw(plots.loads_plot, site, folder / names["loads"]),
            drawing.draw(plots.quarantine_plot, site, folder / names["quarantine"]),
            drawing.draw(plots.completeness_plot, site, folder / names["completeness"]),
        ]
        page(f"site-{site.site_id}.html", "site.html.j2", title=f"Site {site.site_id}",
             site=site, plots=names)  # fmt: skip
    drawn = [
        plots.flow_plot(data.flow, folder / overview["flow"]),
        plots.enrolment_plot(data.enrolment, folder / overview["enrolment"]),
        plots.kri_plot(data.kris, folder / overview["kri"]),
        plots.completeness_heatmap(data.sites, folder / overview["completeness"]),
    ]
    for report in data.suites:
        page(f"suite-{report.slug}.html", "suite.html.j2", title=f"Suite {report.suite.name}",
             report=report)  # fmt: skip
    return drawn


def _query_listings(
    data: ReportData,
    by_site: dict[str, list[tuple[str, str, str, str, str]]],
    folder: Path,
) -> list[Path]:
    env = _env()
    template = env.get_template("queries.html.j2")
    accounting = {site.site_id: site.accounting for site in data.sites}
    written = []
    for site_id, rows in sorted(by_site.items()):
        rows.sort(key=lambda r: (SEVERITY_ORDER.get(r[0], 9), r[1], r[2], natural(r[3])))
        site_dir = folder / site_id
        site_dir.mkdir(parents=True)
        with (site_dir / "queries.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["severity", "table", "check", "record", "what_is_wrong"])
            writer.writerows(rows)
        (site_dir / "index.html").write_text(
            template.render(
                site_id=site_id,
                study_id=data.study_id,
                run_id=data.quality_run,
                rows=rows,
                accounting=accounting.get(site_id, {}),
            ),
            "utf-8",
        )
        written += [site_dir / "queries.csv", site_dir / "index.html"]
    return written
