"""The `rescue` command line: parses arguments, calls the layers, turns errors into one line.

Exit codes (docs/commands.md): 0 success; 1 the job failed; 2 bad usage or configuration;
3 a critical data-quality check refused (part of) the publish; 4 another load holds the warehouse;
5 `status`: something needs attention. Heavy imports (dagster, great_expectations) happen inside
the commands that need them, so `rescue --help` stays instant.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rescue_pipeline import __version__
from rescue_pipeline.config import Config, ConfigError, Environment, config_path, load_config
from rescue_pipeline.run_report import EXIT_FAILED, EXIT_OK
from rescue_pipeline.stopping import (
    StopRequested,
    forget_stops,
    request_stop,
    watch_signals,
)

EXIT_USAGE, EXIT_BUSY, EXIT_ATTENTION = 2, 4, 5

DEMO_DIR = Path("rescue-demo")
DEMO_PATIENTS = 240
DEMO_SEED = 20261125


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _config(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


def _say(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- synth
def _out_error(value: str, exc: OSError) -> CommandError:
    reason = exc.strerror or type(exc).__name__
    return CommandError(f"--out {value}: cannot create the directory ({reason})", EXIT_USAGE)


def _out_dir(value: str) -> Path:
    """--out as a directory that exists (made if need be), or one line saying why not."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise CommandError(f"--out {value}: is a file, not a directory", EXIT_USAGE)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _out_error(value, exc) from None
    if not os.access(path, os.W_OK):
        raise CommandError(f"--out {value}: the directory is not writable", EXIT_USAGE)
    return path


def cmd_synth(args: argparse.Namespace) -> int:
    from rescue_pipeline import synth
    from rescue_pipeline.progress import Stage

    out = _out_dir(args.out)
    with Stage(f"synthesising {args.patients:,} patients", total=args.patients) as stage:
        last = [0]

        def progress(done: int, total: int) -> None:
            stage.advance(done - last[0])
            last[0] = done

        try:
            summary = synth.generate(
                out,
                patients=args.patients,
                sites=args.sites,
                seed=args.seed,
                reference_date=args.reference_date,
                fault_rate=args.fault_rate,
                progress=progress,
            )
        except ValueError as exc:
            raise CommandError(f"synth: {exc}", EXIT_USAGE) from None
    lines = sum(sum(files.values()) for files in summary.files.values())
    _say(f"wrote {lines:,} FHIR lines for {args.patients:,} patients at {len(summary.sites)} sites")
    _say(f"  data:         {out}/<site-id>/<Type>.ndjson (+ manifest.json)")
    _say(f"  ground truth: {summary.ground_truth_path}")
    _say(f"  config:       {summary.config_path}")
    return EXIT_OK


# ---------------------------------------------------------------- run / demo
def _run_pipeline(
    config: Config, site_ids: list[str], *, full: bool = False, dagster_home: Path | None
) -> int:
    import duckdb

    from rescue_pipeline.core.pseudonym import pseudonym_key
    from rescue_pipeline.dagster_defs.runner import instance_for, run_pipeline
    from rescue_pipeline.interpreter import imports_done
    from rescue_pipeline.progress import Stage
    from rescue_pipeline.site_load import work_db
    from rescue_pipeline.warehouse.no_space import no_space

    imports_done()

    pseudonym_key()  # fail before landing anything, not after
    stages: list[Stage] = []

    def begin(label: str) -> None:
        stages.append(Stage(label).__enter__())

    def end(ok: bool, note: str) -> None:
        stage = stages.pop()
        stage.note = note
        stage.__exit__(None if ok else RuntimeError, None, None)

    report = run_pipeline(
        config, site_ids, full=full, instance=instance_for(dagster_home), begin=begin, end=end
    )
    try:
        with work_db(config) as con:  # the landing tables and, when nothing was rebuilt, counts
            _print_summary(con, config, site_ids, report)
    except duckdb.Error as exc:  # a full disk: the errors below still say what happened
        disk_full = no_space(exc)
        if not disk_full:
            raise
        print(f"(no summary: {disk_full})", file=sys.stderr)
    for line in _error_lines(report):
        print(f"error: {line}", file=sys.stderr)
    return report.exit_code


def _print_summary(con: Any, config: Config, site_ids: list[str], report: Any) -> None:
    from rescue_pipeline.analysis.counts import eligibility_counts, pfs_counts
    from rescue_pipeline.run_report import AnalysisPart

    _print_raw_summary(con, config, site_ids)
    core = report.core
    if core is None or not core.ok:
        return
    analysis = report.analysis
    if core.unchanged:
        _say()
        _say(
            "Nothing new since the last publish (same raw layer, configuration, "
            "cut-off and code): the published warehouse and report stand as they were."
        )
        eligible, pfs = eligibility_counts(con), pfs_counts(con)  # as last derived
        analysis = AnalysisPart(
            ok=True, eligible=eligible.eligible, not_eligible=eligible.not_eligible,
            eligibility_unknown=eligible.unknown, pfs_events=pfs.events,
            pfs_censored=pfs.censored,
        )  # fmt: skip
    else:
        _say()
        _say(f"Core tables (built in {core.seconds:.1f}s):")
        table = [("table", "rows"), *((f"core.{k}", v) for k, v in core.rows.items())]
        _say(_format_table(table))
        _say(f"Subjects: {core.rows.get('subjects', 0)}")
    if analysis is not None and analysis.ok:
        _say(
            f"Eligibility: {analysis.eligible} eligible, {analysis.not_eligible} not eligible, "
            f"{analysis.eligibility_unknown} unknown"
        )
        _say(
            f"PFS: {analysis.pfs_events} events, {analysis.pfs_censored} censored (analysis.adtte)"
        )
    if report.quality is not None and report.quality.ok:
        q = report.quality
        _say(
            f"Quality: {q.checks} checks; {len(q.critical_failures)} critical failures, "
            f"{q.warnings} warnings (quality.results)"
        )
    if report.publication is not None and report.publication.ok:
        _print_publication(report)
        _print_report(config)
    if report.validation is not None and report.validation.ok:
        v = report.validation
        counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(v.outcomes.items()))
        _say(
            f"Validated: {v.validated} new versions{': ' + counts if counts else ''} "
            "(raw.version_validation)"
        )


def _print_publication(report: Any) -> None:
    """Whose data the publish holds; the held sites. A site whose load failed this run is not
    called published: what the warehouse holds of it is its last successful load."""
    publication = report.publication
    not_loaded = {load.site_id for load in report.failed_loads}
    published = [s for s in publication.published if s not in not_loaded]
    _say(f"Published: {', '.join(published) or 'no site'}")
    if not_loaded:
        _say(
            f"Not loaded this run: {', '.join(sorted(not_loaded))} "
            "(the warehouse keeps each one's data of its last successful load)"
        )
    for site in sorted(publication.held):
        since = publication.held_since.get(site)
        kept = (
            f"data of {dt.datetime.fromisoformat(since):%Y-%m-%d %H:%M} UTC kept"
            if since
            else "never published"
        )
        _say(f"Held back: {site} ({kept})")


def _error_lines(report: Any) -> list[str]:
    """Each failure of the run report, one line each (printed after the summary)."""
    lines = [load.error or f"site {load.site_id}: load failed" for load in report.failed_loads]
    for name, part in (("core build", report.core), ("analysis", report.analysis),
                       ("quality", report.quality)):  # fmt: skip
        if part is not None and not part.ok:
            lines.append(f"{name}: {part.error}")
    publication = report.publication
    if publication is not None and publication.refused:
        lines.append(publication.refused)
    elif publication is not None and not publication.ok:
        lines.append(f"publish: {publication.error}")
    for site, reason in sorted(publication.held.items()) if publication else ():
        lines.append(f"site {site} held back, its last published data kept: {reason}")
    if report.sponsors_report is not None and not report.sponsors_report.ok:
        lines.append(f"sponsors' report: {report.sponsors_report.error}")
    lines += report.errors
    if report.validation is not None and not report.validation.ok:
        lines.append(f"validation: {report.validation.error}")
    return lines


def _print_report(config: Config) -> None:
    report = config.report_dir / "sponsors" / "index.html"
    if report.exists():  # written by the run's last asset, report/sponsors
        _say(f"Sponsors' report: {report}")
        _say(f"Data queries per site: {config.report_dir / 'data-queries'}/<site-id>/index.html")


def _print_raw_summary(con: Any, config: Config, site_ids: list[str]) -> None:
    from rescue_pipeline.raw import summary

    loads = summary.latest_loads(con, site_ids)
    rows = summary.load_counts(con, list(loads.values()))
    _say()
    _say("Landed (latest load per site):")
    header = ("site", "resource type", "received", "accepted", "quarantined", "new versions")
    counts = [(r.received, r.accepted, r.quarantined, r.new_versions) for r in rows]
    table: list[tuple[object, ...]] = [header]
    table += [(r.site_id, r.resource_type, *c) for r, c in zip(rows, counts, strict=True)]
    table.append(("all", "", *(sum(c[i] for c in counts) for i in range(4))))
    _say(_format_table(table))
    reasons = summary.quarantine_reasons(con, site_ids)
    held = summary.stored(con, site_ids)
    _say("Stored (all loads):")
    for site_id in sorted(held):
        resources, versions, quarantined = held[site_id]
        why = ", ".join(f"{r} {n}" for s, r, n in reasons if s == site_id)
        _say(
            f"  {site_id}: {resources:,} resources in {versions:,} versions; "
            f"{quarantined:,} lines quarantined" + (f" ({why})" if why else "")
        )
    for site_id, n in sorted(summary.deletions(con, site_ids).items()):
        _say(f"  {site_id}: {n:,} deletions reported by the site (raw.deletions)")
    unchanged = [s for s in site_ids if s in loads and not any(r.site_id == s for r in rows)]
    if unchanged:
        _say(f"Unchanged since the last load (nothing new read): {', '.join(unchanged)}")


def _close_interrupted(config: Config) -> None:
    from rescue_pipeline.site_load import close_interrupted_loads

    if config.work_db.exists() and (n := close_interrupted_loads(config)):
        _say(f"(closed {n} load(s) a killed run left open; their data are fetched again)")


def cmd_run(args: argparse.Namespace) -> int:
    from rescue_pipeline.core.pseudonym import pseudonym_key
    from rescue_pipeline.warehouse.lock import writer_lock

    config = _config(args)
    pseudonym_key()  # a run that cannot derive stops before it takes (or creates) the lock
    site_ids = [config.site(args.site).id] if args.site else [s.id for s in config.sites]
    command = (
        "rescue run"
        + (f" --site {args.site}" if args.site else "")
        + (" --full" if args.full else "")
    )
    with writer_lock(config.work_db, command=command):
        _close_interrupted(config)
        return _run_pipeline(config, site_ids, full=args.full, dagster_home=None)


# The demo's own Dagster workspace: the code location of the installed package.
WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: rescue_pipeline.dagster_defs.definitions
      attribute: defs
      location_name: rescue
"""


def cmd_demo(args: argparse.Namespace) -> int:
    from rescue_pipeline import synth

    out = _out_dir(args.out)
    started = time.perf_counter()
    _say(f"rescue demo: a synthetic {args.patients}-patient cohort at 3 sites, in {out}/")
    synth_args = argparse.Namespace(
        out=str(out),
        patients=args.patients,
        sites=3,
        seed=DEMO_SEED,
        reference_date=synth.DEFAULT_REFERENCE_DATE,
        fault_rate=synth.DEFAULT_FAULT_RATE,
    )
    cmd_synth(synth_args)
    config = load_config(out / "sites.yaml")
    from rescue_pipeline.config import KEY_ENV
    from rescue_pipeline.core.pseudonym import DEMO_KEY

    own_key = bool(Environment.current().pseudonym_key)
    if not own_key:
        os.environ[KEY_ENV] = DEMO_KEY  # the demo's documented key; real runs must set their own
        _say(f"(demo: {KEY_ENV} set to the documented demo key)")
    from rescue_pipeline.warehouse.lock import writer_lock

    with writer_lock(config.work_db, command="rescue demo"):
        _close_interrupted(config)
        code = _run_pipeline(
            config, [s.id for s in config.sites], dagster_home=out / "dagster_home"
        )
    _say()
    _say(f"Checks: {config.work_db} quality.results (every run), quality.findings (this run)")
    _say(f"Published warehouse (core, analysis, quality): {config.warehouse}")
    _say(f"Working database (raw, ops): {config.work_db}")
    home, bin_dir = out.resolve(), Path(sys.executable).parent  # the venv's commands
    workspace = home / "workspace.yaml"
    workspace.write_text(WORKSPACE_YAML)
    # the documented demo key may be shown; a key of the user's own is named, never printed
    key = f"${KEY_ENV}" if own_key else DEMO_KEY
    _say(
        f"Query it:   {bin_dir}/rescue query --config {home}/sites.yaml "
        '"SELECT eligible, count(*) FROM analysis.eligibility_summary GROUP BY ALL"'
    )
    _say(
        f"            {bin_dir}/rescue query --work --config {home}/sites.yaml "
        '"SELECT * FROM raw.loads"'
    )
    _say(
        f"Dagster UI: DAGSTER_HOME={home}/dagster_home RESCUE_CONFIG={home}/sites.yaml "
        f"{KEY_ENV}={key} {bin_dir}/dagster dev -w {workspace}"
        "   (then open http://127.0.0.1:3000)"
    )
    _say(f"Done in {time.perf_counter() - started:.1f}s.")
    return code


# ---------------------------------------------------------------- export / km
def _analysis_db(config: Config) -> Any:
    """The published warehouse, read-only: analysts' commands never touch the working one."""
    import duckdb

    from rescue_pipeline.warehouse import sandbox

    if not config.warehouse.exists():
        raise CommandError(f"no database at {config.warehouse}: run `rescue run` first", EXIT_USAGE)
    try:
        return sandbox.connect(config.warehouse)
    except duckdb.IOException as exc:
        raise CommandError(f"{config.warehouse}: {exc}", EXIT_BUSY) from None


def cmd_export(args: argparse.Namespace) -> int:
    from rescue_pipeline.analysis.exports import ExportError, export

    config = _config(args)
    with _analysis_db(config) as con:
        try:
            result = export(
                con, study_id=config.study_id, nct_id=config.nct_id, fmt=args.format,
                out=Path(args.out),  # made only once the datasets pass their checks
            )  # fmt: skip
        except ExportError as exc:
            raise CommandError(f"export: {exc}") from None
        except OSError as exc:
            raise _out_error(args.out, exc) from None
    for name, path in result.files.items():
        _say(f"  {name:<9} {result.rows.get(name, 0):>7,} rows  {path}")
    for label, written in (
        ("define.xml", result.define_xml),
        ("define.html", result.define_html),
        ("define.json", result.define),
    ):
        if written:
            _say(f"  {label:<19} {written}")
    return EXIT_OK


def cmd_km(args: argparse.Namespace) -> int:
    from rescue_pipeline.analysis.km import kaplan_meier

    config = _config(args)
    with _analysis_db(config) as con:
        try:
            result = kaplan_meier(con, out=Path(args.out), paramcd=args.param)
        except ValueError as exc:
            raise CommandError(f"km: {exc}", EXIT_USAGE) from None
        except OSError as exc:
            raise _out_error(args.out, exc) from None
    for kind, path in result.files.items():
        _say(f"  {kind:<6} {path}")
    _say("(for analysts only: never part of the sponsors' data-quality report)")
    return EXIT_OK


# ---------------------------------------------------------------- report
def _write_report(config: Config, out: Path) -> Any:
    from rescue_pipeline.report.render import write_report

    if not config.warehouse.exists():
        raise CommandError(f"no database at {config.warehouse}: run `rescue run` first", EXIT_USAGE)
    return write_report(
        config.warehouse, out, study_id=config.study_id, site_ids=[s.id for s in config.sites]
    )


def cmd_report(args: argparse.Namespace) -> int:
    config = _config(args)
    files = _write_report(config, _out_dir(args.out))
    _say(f"Sponsors' report: {files.sponsors / 'index.html'}  (counts only; opens from disk)")
    _say(f"Data queries per site (for each site's data managers): {files.queries}/")
    for site, n in files.query_files.items():
        _say(f"  {site}: {n:,} open  {files.queries / site / 'index.html'}")
    return EXIT_OK


# ---------------------------------------------------------------- status
def cmd_status(args: argparse.Namespace) -> int:
    from rescue_pipeline import run_report
    from rescue_pipeline.site_load import work_db
    from rescue_pipeline.status import site_statuses

    config = _config(args)
    if not config.work_db.exists():
        raise CommandError(f"no database at {config.work_db}: run `rescue run` first", EXIT_USAGE)
    from rescue_pipeline.warehouse.lock import holder

    writer = holder(config.work_db)  # read before opening: a live load holds this lock
    with work_db(config, read_only=True) as con:
        statuses = site_statuses(con, config, writer_alive=writer is not None)
        report_id = run_report.latest_report_id(con)
        last_run = run_report.read(con, report_id) if report_id else None
    from rescue_pipeline.snapshot import list_snapshots

    snapshots = list_snapshots(config)
    broken = any(not snap["intact"] for snap in snapshots)
    if args.format == "json":
        import orjson

        records: Any = {
            "sites": [{**vars(s), "stale": s.stale} for s in statuses],
            "snapshots": [{k: v for k, v in snap.items() if k != "configuration"}
                          for snap in snapshots],
            "last_run": last_run.to_json() if last_run else None,
        }  # fmt: skip
        sys.stdout.write(orjson.dumps(records, default=str, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:

        def when(value: dt.datetime | None) -> str:
            return f"{value:%Y-%m-%d %H:%M}" if value else "never"

        header = ("site", "last success (UTC)", "last load", "watermark (UTC)", "resources",
                  "quarantined", "deleted", "critical", "warnings", "published")  # fmt: skip
        _say(_format_table([header, *(
            (s.site_id, when(s.last_success), s.last_load_status or "none",
             when(s.watermark_oldest) if s.watermark_oldest else "n/a", s.resources,
             s.quarantined, s.deleted, s.critical_failures, s.warnings,
             s.publication or "never")
            for s in statuses
        )]))  # fmt: skip
        if last_run is not None:
            _say(f"Last run: {run_report.summary(last_run)} (ops.run_reports)")
        for snap in snapshots:
            state = "intact" if snap["intact"] else "CHANGED SINCE IT WAS TAKEN"
            _say(f"Snapshot {snap['data_cutoff']} taken {snap['created_at']}: {snap['path']} "
                 f"({state})")  # fmt: skip
        attention = [(s.site_id, a) for s in statuses for a in s.attention]
        attention += [
            ("snapshot", f"{snap['path']} no longer matches its manifest")
            for snap in snapshots
            if not snap["intact"]
        ]
        for site_id, what in attention:
            _say(f"ATTENTION {site_id}: {what}")
        if not attention:
            hours = config.orchestration.stale_after_hours
            _say(f"All sites loaded within {hours:g} h, checks pass.")
    return EXIT_ATTENTION if broken or any(s.attention for s in statuses) else EXIT_OK


# ---------------------------------------------------------------- snapshot
def cmd_snapshot(args: argparse.Namespace) -> int:
    from rescue_pipeline.snapshot import SnapshotError, take_snapshot

    config = _config(args)
    try:
        snapshot = take_snapshot(config, args.cutoff)
    except SnapshotError as exc:
        raise CommandError(f"snapshot: {exc}", EXIT_USAGE) from None
    _say(f"Snapshot (data cut-off {snapshot.cutoff}): {snapshot.path}")
    for rel, digest in snapshot.files.items():
        _say(f"  {digest[:16]}  {rel}")
    _say(f"  manifest: {snapshot.path / 'manifest.json'} (configuration, rule settings, code "
         "version, row counts, sha256 of every file)")  # fmt: skip
    return EXIT_OK


# ---------------------------------------------------------------- dictionary
def cmd_dictionary(args: argparse.Namespace) -> int:
    from rescue_pipeline.warehouse import dictionary

    for path in dictionary.write(_out_dir(args.out)):
        _say(f"wrote {path}")
    return EXIT_OK


# ---------------------------------------------------------------- query
def cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from rescue_pipeline.warehouse import sandbox

    config = _config(args)
    path = config.work_db if args.work else config.warehouse
    if not path.exists():
        hint = "run `rescue run` first" if args.work else "query the working database with --work"
        raise CommandError(f"no database at {path}: {hint}", EXIT_USAGE)
    try:
        con = sandbox.connect(path)
    except duckdb.IOException as exc:
        raise CommandError(f"{path}: {exc}", EXIT_BUSY) from None
    try:
        statements = sandbox.reading_statements(con, args.sql)
        with sandbox.deadline(con, args.timeout):
            for statement in statements[:-1]:
                con.execute(statement).fetchall()
            cursor = con.execute(statements[-1])
            columns = [d[0] for d in cursor.description or ()]
            _print_rows(args.format, columns, cursor, args.max_rows)
    except sandbox.QueryRefused as exc:
        raise CommandError(f"query refused: {exc}", EXIT_USAGE) from None
    except duckdb.InterruptException:
        raise CommandError(
            f"query stopped after {args.timeout:g} s (--timeout)", EXIT_FAILED
        ) from None
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        hint = ""
        if not args.work and re.search(r'schema "?(raw|ops|core_stage)"? does not exist', first):
            hint = " (the raw, ops and staging tables are in the working database: add --work)"
        raise CommandError(f"query failed: {first}{hint}", EXIT_USAGE) from None
    finally:
        con.close()
    return EXIT_OK


QUERY_BATCH = 10_000


def _print_rows(fmt: str, columns: list[str], cursor: Any, max_rows: int) -> None:
    """Stream the result: CSV and JSON in batches (any size); a table of at most `max_rows`."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        while batch := cursor.fetchmany(QUERY_BATCH):
            writer.writerows(batch)
        return
    if fmt == "json":
        import orjson

        sys.stdout.write("[")
        first = True
        while batch := cursor.fetchmany(QUERY_BATCH):
            for row in batch:
                record = dict(zip(columns, row, strict=True))
                text = orjson.dumps(record, default=str, option=orjson.OPT_INDENT_2).decode()
                sys.stdout.write(("\n  " if first else ",\n  ") + text.replace("\n", "\n  "))
                first = False
        sys.stdout.write("]\n" if first else "\n]\n")
        return
    rows = cursor.fetchmany(max_rows + 1)
    more = len(rows) > max_rows
    rows = rows[:max_rows]
    _say(_format_table([tuple(columns), *rows]))
    if more:
        _say(f"({max_rows} rows shown; more not shown: use --format csv, or --max-rows)")
    else:
        _say(f"({len(rows)} rows)")


def _format_table(rows: Sequence[Sequence[object]]) -> str:
    text = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))] if text else []
    numeric = [
        all(isinstance(row[i], int | float) for row in rows[1:] if row[i] is not None)
        for i in range(len(widths))
    ]
    out = []
    for n, row in enumerate(text):
        cells = [
            c.rjust(w) if numeric[i] and n else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(out)


# ---------------------------------------------------------------- parser
def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be 0 (never) or more: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rescue",
        description="RESCUE trial clinical-data pipeline: FHIR R4 sites → DuckDB warehouse.",
    )
    parser.add_argument("--version", action="version", version=f"rescue {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--log-json",
        metavar="FILE",
        help="also write the pipeline's logs as JSON lines to FILE ('-': stderr; "
        "default $RESCUE_LOG_JSON)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, *, config: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--config",
            help="sites.yaml (default: $RESCUE_CONFIG)" if config else
            "accepted like every command's, not read: this command needs no configuration",
        )  # fmt: skip
        p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        return p

    from_synth = "synthetic cohort (FHIR NDJSON per site) with ground truth and a sites.yaml"
    p = add("synth", f"write a {from_synth}", config=False)
    p.add_argument(
        "--patients",
        type=int,
        required=True,
        metavar="N",
        help="patients to synthesise, shared among the sites",
    )
    p.add_argument(
        "--sites",
        type=int,
        default=3,
        metavar="N",
        help="hospital sites, each with its own coding habits (default 3)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="random seed: the same seed writes the same cohort (default 1)",
    )
    p.add_argument(
        "--reference-date",
        type=_date,
        default=None,
        metavar="DATE",
        help="every date is placed before it (default: a fixed date, so cohorts "
        "do not change with the day)",
    )
    p.add_argument(
        "--fault-rate",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of records given an injected fault, 0 for a clean cohort (default 0.02)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory for the NDJSON files, ground_truth.json and sites.yaml",
    )
    p.set_defaults(func=cmd_synth)

    p = add("demo", "synthesise a 3-site cohort and run the whole pipeline on it", config=False)
    p.add_argument(
        "--out",
        default=str(DEMO_DIR),
        metavar="DIR",
        help=f"directory for the cohort, warehouse and report (default {DEMO_DIR})",
    )
    p.add_argument(
        "--patients",
        type=int,
        default=DEMO_PATIENTS,
        metavar="N",
        help=f"patients to synthesise (default {DEMO_PATIENTS})",
    )
    p.set_defaults(func=cmd_demo)

    p = add("run", "load every site (or one) incrementally, then derive, check, publish and report")
    p.add_argument("--site", metavar="ID", help="only this site (its id in sites.yaml)")
    p.add_argument("--full", action="store_true", help="re-read everything (ignore watermarks)")
    p.set_defaults(func=cmd_run)

    p = add(
        "export",
        "write ADSL, ADTTE, ADELIG, ADELIGEV and ADELIGSM as Parquet, CSV or SAS XPT, with "
        "define.xml (Define-XML 2.1), define.html and define.json",
    )
    p.add_argument(
        "--format",
        choices=("parquet", "csv", "xpt"),
        required=True,
        help="xpt: SAS transport v5 for submission; parquet or csv for analysis",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
    p.set_defaults(func=cmd_export)

    p = add("km", "Kaplan-Meier first look (PNG + table), for analysts only")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
    p.add_argument(
        "--param",
        default="PFS",
        choices=("PFS", "OS", "TFST"),
        help="time-to-event parameter (default PFS)",
    )
    p.set_defaults(func=cmd_km)

    p = add("status", "per site: last load, watermarks, counts, staleness, failing checks")
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for people, json for monitoring (default table)",
    )
    p.set_defaults(func=cmd_status)

    p = add("snapshot", "freeze the published warehouse and its exports for a data cut-off")
    p.add_argument(
        "--cutoff",
        type=_date,
        required=True,
        metavar="YYYY-MM-DD",
        help="the analysis data cut-off",
    )
    p.set_defaults(func=cmd_snapshot)

    p = add("report", "write the sponsors' data-quality site and each site's data queries")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the site")
    p.set_defaults(func=cmd_report)

    p = add("dictionary", "write the data dictionary (Markdown and HTML)", config=False)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
    p.set_defaults(func=cmd_dictionary)

    p = add("query", "read-only SQL on the published warehouse (or --work)")
    p.add_argument("sql", help="one or more SELECT statements (the last one's rows are shown)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), or csv / json to stream every row",
    )
    p.add_argument("--work", action="store_true", help="query the working database")
    p.add_argument(
        "--timeout", type=_seconds, default=600.0, metavar="SECONDS",
        help="stop a query still running after this long (default 600; 0: never)",
    )  # fmt: skip
    p.add_argument(
        "--max-rows", type=int, default=1000, metavar="N",
        help="rows shown by --format table (default 1000; csv and json stream everything)",
    )  # fmt: skip
    p.set_defaults(func=cmd_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the command itself, not a caller in a process of its own
        from rescue_pipeline.interpreter import collect_less

        collect_less()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "synth":
        from rescue_pipeline import synth

        args.reference_date = args.reference_date or synth.DEFAULT_REFERENCE_DATE
        args.fault_rate = synth.DEFAULT_FAULT_RATE if args.fault_rate is None else args.fault_rate
    _setup_logs(args)
    main_thread = threading.current_thread() is threading.main_thread()
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {n: signal.signal(n, _stop_on_signal) for n in stops} if main_thread else {}
    if main_thread:
        watch_signals()
    forget_stops()
    # a library that catches our stop where it landed and logs it (SQLAlchemy's pool closing a
    # connection) would print its traceback: the stop has its own one line
    logging.getLogger("sqlalchemy.pool").addFilter(_not_our_stop)
    try:
        return int(args.func(args))
    except StopRequested as exc:  # rolled back where it landed; say what stands
        tail = ""
        if args.command in ("run", "demo"):
            if exc.published and exc.report_written:
                tail = "; the new warehouse and its report had been published"
            elif exc.published:
                tail = "; the new warehouse had been published, its report was not written"
            else:
                tail = "; nothing was published"
        print(f"error: {exc}{tail}", file=sys.stderr)
        return 130 if exc.signum == signal.SIGINT else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        code, message = _classify(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _not_our_stop(record: logging.LogRecord) -> bool:
    """Drop a log record whose exception is our own stop request."""
    return not (record.exc_info and isinstance(record.exc_info[1], StopRequested))


def _stop_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM (a scheduler's or a container's stop) or SIGINT: stop where we are, so the
    transaction in progress rolls back. Dagster maps SIGTERM to the SIGINT handler and puts
    this one back after each run; inside a step it raises its own interrupt, which run_sites
    and run_core read as a stop. Imports nothing: the signal may land mid-import."""
    raise request_stop(signum)


def _setup_logs(args: argparse.Namespace) -> None:
    """JSON logs when asked; the configuration (if any) names the secrets to mask."""
    from rescue_pipeline import logs

    if not (args.log_json or Environment.current().log_target):
        return
    config = None
    if getattr(args, "config", None) or Environment.current().config_path:
        try:
            config = _config(args)
        except (ConfigError, OSError):
            config = None  # the command itself reports the bad configuration
    logs.configure(args.log_json, config)


def _classify(exc: Exception) -> tuple[int, str]:
    from rescue_pipeline.core.pseudonym import PseudonymKeyMissing
    from rescue_pipeline.site_load import SiteLoadError
    from rescue_pipeline.warehouse.lock import WarehouseBusy
    from rescue_pipeline.warehouse.no_space import no_space

    if isinstance(exc, PseudonymKeyMissing):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, CommandError):
        return exc.code, str(exc)
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, WarehouseBusy):
        return EXIT_BUSY, str(exc)
    if isinstance(exc, SiteLoadError):
        return EXIT_FAILED, str(exc)
    full = no_space(exc)
    if full:
        return EXIT_FAILED, full
    if isinstance(exc, OSError) and exc.filename:
        return EXIT_FAILED, f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return EXIT_FAILED, f"{type(exc).__name__}: {first} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
