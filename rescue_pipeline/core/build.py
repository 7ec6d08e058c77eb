"""Build the core layer in the working database: flat views, then set-based SQL, then the two
rules that need Python (lines of therapy, recurrence numbering), each a pure function.

Order: terminology → flat.* (ViewDefinitions compiled to DuckDB SQL) → usubjids → sql/00..01 →
ages → sql/02..05 → regimens → recurrences → sql/06..07 → GCIG progression → sql/08 (the
accounting of every current resource). Every core table is dropped and rebuilt
from the raw layer on each build (a replay: the same raw layer gives the same core).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa

from rescue_pipeline.config import KEY_CHANGED_ENV, KEY_ENV, Config, Environment
from rescue_pipeline.core import pseudonym, terminology
from rescue_pipeline.rules.dates import age_bounds
from rescue_pipeline.rules.gcig import Ca125, gcig_progression
from rescue_pipeline.rules.recurrence import DiseaseEvent, find_recurrences
from rescue_pipeline.rules.regimens import Administration, group_lines
from rescue_pipeline.rules.screening import recurrence_limit
from rescue_pipeline.viewdef import compile_view
from rescue_pipeline.warehouse.core_tables import CORE_TABLES, build_runs, progression_events
from rescue_pipeline.warehouse.core_tables import recurrences as recurrences_table
from rescue_pipeline.warehouse.core_tables import regimens as regimens_table
from rescue_pipeline.warehouse.database import (
    count_rows,
    has_table,
    rebuild_tables,
    record_run,
    transaction,
)
from rescue_pipeline.warehouse.statements import ScriptError, duckdb_first_line, run_script
from rescue_pipeline.warehouse.streams import ColumnSink, by_subject, insert_arrow


@dataclass
class CoreBuildResult:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # the inputs were those of the last publish: nothing was rebuilt (site_load decides)
    unchanged: bool = False


@cache
def view_definitions() -> dict[str, dict[str, Any]]:
    folder = resources.files("rescue_pipeline.core").joinpath("views")
    views = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            view = json.loads(entry.read_text("utf-8"))
            views[view["name"]] = view
    return views


def _sql(name: str) -> str:
    return resources.files("rescue_pipeline.core").joinpath("sql", name).read_text("utf-8")


class CoreBuildError(RuntimeError):
    """A core build stage failed: its name and DuckDB's first line (out of memory, a missing
    table), never its advice or a quoted value."""


def build_core(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    key: bytes,
    today: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
) -> CoreBuildResult:
    started = time.perf_counter()
    result = CoreBuildResult()

    def stage(name: str, work: Callable[[], object]) -> None:
        if progress:
            progress(name)
        t = time.perf_counter()
        try:
            work()
        except ScriptError as exc:  # which stage and statement, and DuckDB's own first line
            raise CoreBuildError(
                f"stage {name}: {exc.label}: {duckdb_first_line(exc.error)}"
            ) from None
        except duckdb.Error as exc:
            raise CoreBuildError(f"stage {name}: {duckdb_first_line(exc)}") from None
        result.stage_seconds[name] = round(time.perf_counter() - t, 3)

    def scripts(*names: str) -> None:
        for name in names:
            stage(name, partial(run_script, con, _sql(f"{name}.sql")))

    with transaction(con):
        for schema in ("flat", "core", "core_stage"):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        stage("terminology", lambda: terminology.load(con, config.sites))
        stage("flat views", lambda: _flatten(con))
        stage("tables", lambda: rebuild_tables(con, CORE_TABLES, run_log=build_runs))
        low, high = terminology.epithelial_range()
        con.execute(f"SET VARIABLE epithelial_low = {int(low)}")
        con.execute(f"SET VARIABLE epithelial_high = {int(high)}")
        con.execute("SET VARIABLE study_nct = ?", [config.nct_id])
        stage("subject ids", lambda: _usubjids(con, key))
        scripts("00_stage", "01_subjects")
        stage("ages", lambda: _ages(con))
        scripts(
            "02_diagnoses",
            "03_ca125",
            "04_drug_administrations",
            "05_observations",
            "05_partial_dates",
        )
        stage("regimens", lambda: _regimens(con, config.analysis.regimen_gap_days))
        cutoff = config.analysis.data_cutoff or today or dt.date.today()
        stage("recurrences", lambda: _recurrences(con, config.analysis.ca125_uln_u_per_ml, cutoff))
        scripts("06_progression", "07_accounting")
        uln = config.analysis.ca125_uln_u_per_ml
        stage("gcig progression", lambda: _gcig_progression(con, uln))
        scripts("08_resource_accounting")
        result.rows = count_rows(con, CORE_TABLES, run_log=build_runs)
        result.seconds = round(time.perf_counter() - started, 3)
        record_run(
            con, build_runs, settings=asdict(config.analysis), rows=result.rows,
            seconds=result.seconds,
        )  # fmt: skip
    return result


def _flatten(con: duckdb.DuckDBPyConnection) -> None:
    """Each resource type's current versions are selected once (the raw.fhir_resources view
    ranks versions with a window function), then every view of that type reads them. The keys
    of every current resource, of the types no view reads too, go to core_stage.current: the
    accounting reads them there instead of ranking every version again."""
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for name, view in view_definitions().items():
        by_type[view["resource"]].append((name, view))
    con.execute(
        "CREATE OR REPLACE TABLE core_stage.current "
        "(site_id VARCHAR, resource_type VARCHAR, resource_id VARCHAR)"
    )
    for resource_type, views in by_type.items():
        con.execute(
            "CREATE OR REPLACE TEMP TABLE flat_source AS "
            "SELECT site_id, resource_type, resource_id, payload FROM raw.fhir_resources "
            "WHERE resource_type = ?",
            [resource_type],
        )
        con.execute(
            "INSERT INTO core_stage.current SELECT site_id, resource_type, resource_id "
            "FROM flat_source"
        )
        for name, view in views:
            sql = compile_view(view, source="flat_source")
            con.execute(f"CREATE OR REPLACE TABLE flat.{name} AS {sql}")
    con.execute("DROP TABLE IF EXISTS flat_source")
    con.execute(
        "INSERT INTO core_stage.current SELECT site_id, resource_type, resource_id "
        "FROM raw.fhir_resources WHERE NOT list_contains(?, resource_type)",
        [sorted(by_type)],
    )


def _usubjids(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    rows = con.execute(
        "SELECT site_id, id, patient_id, subject_identifier FROM flat.research_subject"
    ).fetchall()
    table = pa.table(
        {
            "site_id": [r[0] for r in rows],
            "research_subject_id": [r[1] for r in rows],
            "usubjid": [pseudonym.usubjid(key, r[0], r[2] or r[1], r[3]) for r in rows],
        }
    )
    con.register("usubjid_source", table)
    try:
        _same_key(con)
        con.execute("CREATE OR REPLACE TABLE core_stage.usubjids AS FROM usubjid_source")
    finally:
        con.unregister("usubjid_source")


def _same_key(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse a pseudonym key other than the one the existing hashed ids were made with: every
    such subject would silently become someone new to analysts, exports and data queries. A
    subject whose hashed id changed while others kept theirs is a site's correction (her
    patient reference), not a new key."""
    if not has_table(con, "core_stage", "usubjids") or Environment.current().pseudonym_key_changed:
        return
    kept, changed = con.execute(
        "SELECT count(*) FILTER (o.usubjid = n.usubjid), count(*) FILTER (o.usubjid <> n.usubjid) "
        "FROM core_stage.usubjids o JOIN usubjid_source n USING (site_id, research_subject_id) "
        "WHERE regexp_matches(o.usubjid, ?)",
        [pseudonym.HASHED],
    ).fetchall()[0]
    if changed and not kept:
        raise pseudonym.PseudonymKeyChanged(
            f"{KEY_ENV} is not the key this warehouse's subject ids were made with: all "
            f"{changed:,} pseudonymous ids (RESCUE-<site>-X...) would change. Set the key they "
            f"were made with, or set {KEY_CHANGED_ENV}=yes for one run to re-key them on purpose"
        )


BREAKS_SQL = """
-- Documented recurrences and progressions: each ends the line of therapy in progress (rule book
-- §3). A secondary cancer counts only with an onset after the primary's diagnosis (one present
-- at diagnosis is metastatic disease).
SELECT usubjid, assessed_on FROM core.disease_statuses
WHERE status = 'worsened' AND assessed_on IS NOT NULL
UNION
SELECT usubjid, assessed_on FROM core.tumour_assessments
WHERE response = 'PD' AND assessed_on IS NOT NULL
UNION
SELECT o.usubjid, o.onset_on
FROM core_stage.secondary_onsets o
JOIN (SELECT usubjid, min(diagnosed_on) AS diagnosed_on FROM core.diagnoses GROUP BY 1) d
  ON d.usubjid = o.usubjid
WHERE o.onset_on > d.diagnosed_on
"""


def _ages(con: duckdb.DuckDBPyConnection) -> None:
    """Each subject's age on the consent date, else the randomisation date, by the age rule
    (partial birth dates give a range). The birth date itself never leaves the staging views."""
    rows = con.execute(
        """
        SELECT s.usubjid, p.birth_date, s.consented_on, s.randomised_on
        FROM core.subjects s
        JOIN core_stage.usubjids u ON u.usubjid = s.usubjid AND u.site_id = s.site_id
        JOIN flat.research_subject r ON r.site_id = u.site_id AND r.id = u.research_subject_id
        LEFT JOIN flat.patient p ON p.site_id = r.site_id AND p.id = r.patient_id
        """
    ).fetchall()
    out: dict[str, list[Any]] = defaultdict(list)
    for usubjid, birth, consent, randomised in rows:
        on = consent or randomised
        bounds = age_bounds(birth, on)
        low, high = bounds if bounds is not None else (None, None)
        out["usubjid"].append(usubjid)
        out["age_min"].append(low)
        out["age_max"].append(high)
        out["age_on"].append(on if bounds is not None else None)
        out["age_basis"].append(
            None if bounds is None else "consent" if consent is not None else "randomisation"
        )
        out["age_at_consent"].append(low if consent is not None and low == high else None)
    if not rows:
        return
    schema = pa.schema(
        [
            ("usubjid", pa.string()),
            ("age_min", pa.int32()),
            ("age_max", pa.int32()),
            ("age_on", pa.date32()),
            ("age_basis", pa.string()),
            ("age_at_consent", pa.int32()),
        ]
    )
    con.register("subject_ages", pa.table(dict(out), schema=schema))
    con.execute(
        "UPDATE core.subjects s SET age_min = a.age_min, age_max = a.age_max, age_on = a.age_on, "
        "age_basis = a.age_basis, age_at_consent = a.age_at_consent "
        "FROM subject_ages a WHERE a.usubjid = s.usubjid"
    )
    con.unregister("subject_ages")


def _regimens(con: duckdb.DuckDBPyConnection, gap_days: int) -> None:
    """Lines of therapy, a subject at a time from a stream of administrations in subject
    order; only one subject's doses are Python objects at once."""
    breaks: dict[str, list[dt.date]] = defaultdict(list)
    for usubjid, day in con.execute(BREAKS_SQL).fetchall():
        breaks[usubjid].append(day)
    out = ColumnSink(regimens_table)
    for usubjid, doses in by_subject(
        con,
        "SELECT usubjid, site_id, started_on, drug, drug_class, platinum, maintenance_capable, "
        "source_type, source_id, ended_on FROM core.drug_administrations "
        # a dose dated to the month or year has no place in a line (core.partial_dates has it)
        "WHERE started_on IS NOT NULL ORDER BY usubjid",
    ):
        administrations = [Administration(*fields) for _site, *fields in doses]
        _add_regimens(out, (usubjid, doses[0][0]), administrations, gap_days, breaks)
    insert_arrow(con, regimens_table, out.table())


def _add_regimens(
    out: ColumnSink,
    subject: tuple[str, str],
    administrations: list[Administration],
    gap_days: int,
    breaks: dict[str, list[dt.date]],
) -> None:
    usubjid, site = subject
    for regimen in group_lines(administrations, gap_days=gap_days, breaks=breaks.get(usubjid, ())):
        first = min(regimen.administrations, key=lambda a: (a.day, a.source_id))
        out.add(
            {
                "usubjid": usubjid,
                "line": regimen.line,
                "maintenance": regimen.maintenance,
                "drugs": ", ".join(regimen.drugs),
                "platinum": regimen.platinum,
                "started_on": regimen.start,
                "ended_on": regimen.end,
                "cycles": regimen.cycles,
                "administrations": len(regimen.administrations),
                "site_id": site,
                "source_type": first.source_type,
                "source_id": first.source_id,
            }
        )


def _recurrences(con: duckdb.DuckDBPyConnection, uln: float, cutoff: dt.date) -> None:
    first_line = first_line_ends(con)
    until = recurrence_limits(con, cutoff)
    out = ColumnSink(recurrences_table)
    for usubjid, events in by_subject(
        con,
        f"SELECT * FROM ({RECURRENCE_EVENTS_SQL}) WHERE day IS NOT NULL ORDER BY usubjid",
        {"uln": uln},
    ):
        end = first_line.get(usubjid)
        if end is None or usubjid not in until:
            continue  # no first line of treatment recorded: nothing can be a recurrence
        site = events[0][0]
        subject_events = [DiseaseEvent(day, kind, st, sid) for _, day, kind, st, sid in events]
        for rec in find_recurrences(subject_events, first_line_end=end, until=until[usubjid]):
            out.add(
                {
                    "usubjid": usubjid,
                    "number": rec.number,
                    "recurred_on": rec.day,
                    "site_id": site,
                    "source_type": rec.source_type,
                    "source_id": rec.source_id,
                }
            )
    insert_arrow(con, recurrences_table, out.table())


def first_line_ends(con: duckdb.DuckDBPyConnection) -> dict[str, dt.date]:
    """Each subject's end of first-line chemotherapy (nothing before it is a recurrence)."""
    return dict(
        con.execute(
            "SELECT usubjid, max(ended_on) FROM core.regimens "
            "WHERE line = 1 AND NOT maintenance GROUP BY usubjid"
        ).fetchall()
    )


def recurrence_limits(con: duckdb.DuckDBPyConnection, cutoff: dt.date) -> dict[str, dt.date]:
    """Each subject's last day a recurrence may fall on to be the screened one."""
    return {
        u: recurrence_limit(consent, rand, cutoff)
        for u, rand, consent in con.execute(
            "SELECT usubjid, randomised_on, consented_on FROM core.subjects"
        ).fetchall()
    }


# The dated disease events a recurrence is read from (rule book §3): usubjid, site, day, kind,
# source type, source id. The analysis re-reads them for subjects with partially dated events.
RECURRENCE_EVENTS_SQL = """
        SELECT usubjid, site_id, assessed_on AS day,
               CASE status WHEN 'ned' THEN 'disease_free' ELSE 'worsening' END AS kind,
               source_type, source_id
        FROM core.disease_statuses WHERE status IN ('ned', 'worsened') AND assessed_on IS NOT NULL
        UNION ALL
        SELECT usubjid, site_id, assessed_on,
               CASE response WHEN 'CR' THEN 'disease_free' ELSE 'worsening' END,
               source_type, source_id
        FROM core.tumour_assessments WHERE basis = 'recist' AND response IN ('CR', 'PD')
        UNION ALL
        SELECT usubjid, site_id, measured_on, 'disease_free', source_type, source_id
        FROM core.ca125_measurements WHERE below_lod OR value_u_per_ml < $uln
        UNION ALL
        SELECT usubjid, site_id, onset_on, 'worsening', 'Condition', source_id
        FROM core_stage.secondary_onsets
"""


def _gcig_progression(con: duckdb.DuckDBPyConnection, uln: float) -> None:
    """GCIG CA-125 progression after randomisation, as progression_events with basis 'gcig';
    a randomised subject at a time."""
    out = ColumnSink(progression_events)
    for usubjid, samples in by_subject(
        con,
        """
        SELECT c.usubjid, c.site_id, c.measured_on, c.value_u_per_ml, c.source_id,
               c.measured_on > s.randomised_on AS after
        FROM core.ca125_measurements c JOIN core.subjects s USING (usubjid)
        WHERE s.randomised_on IS NOT NULL AND c.value_u_per_ml IS NOT NULL
        ORDER BY c.usubjid, c.measured_on, c.source_id
        """,
    ):
        site = samples[0][0]
        baseline: float | None = None
        after: list[Ca125] = []
        for _site, day, value, sid, is_after in samples:
            if is_after:
                after.append(Ca125(day, float(value), sid))
            else:
                baseline = float(value)
        found = gcig_progression(after, baseline=baseline, uln=uln) if after else None
        if found is None:
            continue
        out.add(
            {
                "usubjid": usubjid,
                "progressed_on": found.day,
                "basis": "gcig",
                "site_id": site,
                "source_type": "Observation",
                "source_id": found.evidence[0],
            }
        )
    insert_arrow(con, progression_events, out.table())
