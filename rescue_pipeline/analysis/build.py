"""Derive the analysis datasets from core: eligibility (with evidence), ADSL and ADTTE.

SQL gathers each subject's facts in a handful of set-based queries (no per-subject queries);
the pure rules in rescue_pipeline.rules decide; this module only assembles. Every table is
rebuilt on each derivation, and the settings used are recorded in analysis.derivation_runs.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import duckdb
import pyarrow as pa

from rescue_pipeline.analysis.codelists import ARM_TEXT
from rescue_pipeline.analysis.counts import (
    EligibilityCounts,
    PfsCounts,
    eligibility_counts,
    pfs_counts,
)
from rescue_pipeline.analysis.rows import Diagnosis, Subject, columns
from rescue_pipeline.config import AnalysisConfig, Config
from rescue_pipeline.core.build import RECURRENCE_EVENTS_SQL, first_line_ends, recurrence_limits
from rescue_pipeline.rules import eligibility as elig
from rescue_pipeline.rules import partial_dates, screening, treatment, tte
from rescue_pipeline.rules.gcig import Ca125, gcig_response
from rescue_pipeline.rules.recurrence import DiseaseEvent, find_recurrences
from rescue_pipeline.rules.regimens import count_cycles
from rescue_pipeline.warehouse import analysis_tables as tables
from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.database import (
    count_rows,
    rebuild_tables,
    record_run,
    transaction,
)
from rescue_pipeline.warehouse.streams import ColumnSink, insert_arrow

# Subjects whose facts are read and decided together: memory grows with this, not the cohort
# (a batch's facts are a few hundred MB at most); each batch costs a dozen indexed queries.
SUBJECTS_PER_BATCH = 10_000


@dataclass
class AnalysisResult:
    rows: dict[str, int] = field(default_factory=dict)
    eligible: EligibilityCounts = field(default_factory=EligibilityCounts)
    pfs: PfsCounts = field(default_factory=PfsCounts)
    seconds: float = 0.0


def _grouped(
    con: duckdb.DuckDBPyConnection, sql: str, **params: Any
) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of a query grouped by its first column (usubjid), in query order."""
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in con.execute(sql, params or None).fetchall():
        out[row[0]].append(tuple(row[1:]))
    return out


def derive_analysis(
    con: duckdb.DuckDBPyConnection, config: Config, *, today: dt.date | None = None
) -> AnalysisResult:
    """Eligibility, ADSL and ADTTE for every subject, SUBJECTS_PER_BATCH subjects at a time: each
    batch's facts are read by the same set-based queries, decided by the rules and gathered as
    Arrow columns, so memory grows with the batch, not with the cohort."""
    started = time.perf_counter()
    a = config.analysis
    cutoff = a.data_cutoff or today or dt.date.today()
    subjects = Subject.read_all(con)
    ages = {
        u: ((low, high) if low is not None else None, basis)
        for u, low, high, basis in con.execute(
            "SELECT usubjid, age_min, age_max, age_basis FROM core.subjects"
        ).fetchall()
    }
    recurrences = _grouped(con, "SELECT usubjid, recurred_on, source_id FROM core.recurrences "
                                "ORDER BY usubjid, number")  # fmt: skip
    batches = [
        subjects[i : i + SUBJECTS_PER_BATCH] for i in range(0, len(subjects), SUBJECTS_PER_BATCH)
    ]
    _screening_windows(
        con, recurrences, cutoff, {s.usubjid: n for n, batch in enumerate(batches) for s in batch}
    )
    with_status = {
        u for (u,) in con.execute(
            "SELECT usubjid FROM core.disease_statuses "
            "UNION SELECT usubjid FROM core.tumour_assessments"
        ).fetchall()
    }  # fmt: skip
    context = _Context(
        config=config,
        cutoff=cutoff,
        ages=ages,
        recurrences=recurrences,
        with_status=with_status,
        first_line=first_line_ends(con),
        until=recurrence_limits(con, cutoff),
    )
    settings = tte.Settings(
        data_cutoff=cutoff,
        window_days=a.pfs_window_days,
        assessment_interval_days=a.assessment_interval_days,
        assessment_window_days=a.assessment_window_days,
    )
    out = _Outputs()
    for number, members in enumerate(batches):
        _eligibility(con, context, number, members, out)
        _adtte(con, config.study_id, number, members, settings, a, out.adtte)
    adsl = _adsl(config.study_id, subjects, out.eligible_of, ages,
                 _first_treatments(con), cutoff=cutoff, window_days=a.pfs_window_days)  # fmt: skip

    with transaction(con):
        con.execute("CREATE SCHEMA IF NOT EXISTS analysis")
        rebuild_tables(con, ANALYSIS_TABLES, run_log=tables.derivation_runs)
        insert_arrow(con, tables.eligibility, out.eligibility.table())
        insert_arrow(con, tables.eligibility_summary, out.summary.table())
        insert_arrow(con, tables.adsl, adsl.table())
        insert_arrow(con, tables.adtte, out.adtte.table())
        result = AnalysisResult(
            rows=count_rows(con, ANALYSIS_TABLES, run_log=tables.derivation_runs)
        )
        result.eligible = eligibility_counts(con)
        result.pfs = pfs_counts(con)
        result.seconds = round(time.perf_counter() - started, 3)
        recorded = {**asdict(a), "data_cutoff": cutoff.isoformat()}
        record_run(
            con, tables.derivation_runs, settings=recorded, rows=result.rows,
            seconds=result.seconds,
        )  # fmt: skip
    return result


@dataclass(frozen=True)
class _Context:
    """What every batch reads: settings, and the per-subject facts small enough to hold whole."""

    config: Config
    cutoff: dt.date
    ages: dict[str, tuple[tuple[int, int] | None, str | None]]
    recurrences: dict[str, list[tuple[Any, ...]]]
    with_status: set[str]
    first_line: dict[str, dt.date]
    until: dict[str, dt.date]


@dataclass
class _Outputs:
    """The derived rows, as Arrow columns of each table's types."""

    eligibility: ColumnSink = field(default_factory=lambda: ColumnSink(tables.eligibility))
    summary: ColumnSink = field(default_factory=lambda: ColumnSink(tables.eligibility_summary))
    adtte: ColumnSink = field(default_factory=lambda: ColumnSink(tables.adtte))
    eligible_of: dict[str, str] = field(default_factory=dict)


def _eligibility(
    con: duckdb.DuckDBPyConnection,
    context: _Context,
    batch: int,
    members: list[Subject],
    out: _Outputs,
) -> None:
    """Each subject of the batch against every criterion, under every reading of her partly
    dated records (rule book §1 "Dates")."""
    a = context.config.analysis
    diagnoses = {
        usubjid: [Diagnosis(*row) for row in rows]
        for usubjid, rows in _grouped(
            con,
            # a qualifying primary decides before a recorded, non-qualifying one (site other)
            f"SELECT d.usubjid, {columns(Diagnosis)} FROM core.diagnoses d "
            "JOIN screen s USING (usubjid) WHERE s.batch = $batch "
            "ORDER BY d.usubjid, d.primary_site = 'other', d.diagnosed_on NULLS LAST, d.source_id",
            batch=batch,
        ).items()
    }
    platinum = _grouped(
        con,
        """
        SELECT d.usubjid, d.started_on, d.source_id, r.line
        FROM core.drug_administrations d JOIN screen s USING (usubjid)
        LEFT JOIN core.regimens r ON r.usubjid = d.usubjid AND NOT r.maintenance
             AND d.started_on BETWEEN r.started_on AND r.ended_on
        WHERE s.batch = $batch AND d.platinum AND d.started_on <= s.until
        ORDER BY d.usubjid, d.started_on, d.source_id
        """,
        batch=batch,
    )
    worsenings = _grouped(
        con,
        """
        SELECT w.usubjid, w.day, w.source_id FROM (
            SELECT usubjid, assessed_on AS day, source_id FROM core.disease_statuses
            WHERE status = 'worsened'
            UNION ALL
            SELECT usubjid, assessed_on, source_id FROM core.tumour_assessments
            WHERE response = 'PD'
        ) w JOIN screen s USING (usubjid) WHERE s.batch = $batch AND w.day <= s.until
        ORDER BY 1, 2, 3
        """,
        batch=batch,
    )
    assessments = _grouped(
        con,
        "SELECT t.usubjid, t.assessed_on, t.response, t.source_id FROM core.tumour_assessments t "
        "JOIN screen s USING (usubjid) WHERE s.batch = $batch AND t.assessed_on <= s.until "
        "ORDER BY 1, 2, 4",
        batch=batch,
    )
    ca125 = _grouped(
        con,
        "SELECT c.usubjid, c.measured_on, c.value_u_per_ml, c.source_id "
        "FROM core.ca125_measurements c JOIN screen s USING (usubjid) "
        "WHERE s.batch = $batch AND c.value_u_per_ml IS NOT NULL AND c.measured_on <= s.until "
        "ORDER BY 1, 2, 4",
        batch=batch,
    )
    resectability = _grouped(
        con,
        "SELECT r.usubjid, r.judged_on, r.judgement, r.source_id FROM core.resectability r "
        "JOIN screen s USING (usubjid) WHERE s.batch = $batch AND r.judged_on <= s.until "
        "ORDER BY 1, 2, 4",
        batch=batch,
    )
    findings = _grouped(
        con,
        "SELECT f.usubjid, f.finding, f.recorded_on, f.source_id FROM core.screening_findings f "
        "JOIN screen s USING (usubjid) WHERE s.batch = $batch AND f.present "
        "AND f.recorded_on <= s.until ORDER BY 1, 3",
        batch=batch,
    )

    partial = _partial_records(con, a.ca125_uln_u_per_ml, batch)
    redated = _Recurrences(con, partial, a.ca125_uln_u_per_ml, context.first_line, context.until)

    for subject in members:
        usubjid, site = subject.usubjid, subject.site_id
        dated = _Dated(
            platinum=platinum.get(usubjid, []),
            worsenings=worsenings.get(usubjid, []),
            assessments=assessments.get(usubjid, []),
            ca125=ca125.get(usubjid, []),
            resectability=resectability.get(usubjid, []),
            findings=findings.get(usubjid, []),
        )
        per_reading: list[list[elig.Criterion]] = []
        extras: list[dict[str, Any]] = []
        records = partial.get(usubjid, [])
        for days in partial_dates.readings([r.options for r in records]):
            lists = dated.with_partial(records, days) if records else dated
            facts, extra = _facts(
                usubjid=usubjid,
                consent_on=subject.consented_on,
                transfer=subject.consent_data_transfer,
                age=context.ages.get(usubjid, (None, None)),
                rs_id=subject.source_id,
                recurrences=(
                    redated.of(usubjid, records, days)
                    if usubjid in redated.subjects
                    else context.recurrences.get(usubjid, [])
                ),
                has_status=usubjid in context.with_status,
                diagnoses=diagnoses.get(usubjid, []),
                **lists.lists(),
                uln=a.ca125_uln_u_per_ml,
            )
            per_reading.append(elig.assess(facts, pfi_days=a.pfi_sensitive_days))
            extras.append(extra)
        criteria = partial_dates.agree(per_reading, [r.source_id for r in records])
        extra = {k: v if all(e[k] == v for e in extras) else None for k, v in extras[0].items()}
        eligible, failed, unknown = elig.summary(criteria)
        out.eligible_of[usubjid] = eligible
        for c in criteria:
            out.eligibility.add(
                {
                    "usubjid": usubjid, "criterion": c.code, "status": c.status,
                    "value": c.value, "evidence": ",".join(c.evidence) or None, "site_id": site,
                }
            )  # fmt: skip
        out.summary.add(
            {
                "usubjid": usubjid, "eligible": eligible,
                "failed_criteria": ",".join(failed) or None,
                "unknown_criteria": ",".join(unknown) or None, **extra, "site_id": site,
            }
        )  # fmt: skip


@dataclass(frozen=True)
class _Partial:
    """A screening record dated only to a month or year, and the days it may fall on."""

    # (which list, the row as that list's query gives it with None for the day, where the day
    # stands in the row): a PD assessment is both an assessment and a worsening, on one day
    rows: tuple[tuple[str, tuple[Any, ...], int], ...]
    source_id: str
    options: list[dt.date | None]
    # the disease event it is for the recurrences (rule book §3): (kind, source type), or None
    event: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Dated:
    """One subject's dated screening rows, as the queries in derive_analysis give them."""

    platinum: list[tuple[Any, ...]]
    worsenings: list[tuple[Any, ...]]
    assessments: list[tuple[Any, ...]]
    ca125: list[tuple[Any, ...]]
    resectability: list[tuple[Any, ...]]
    findings: list[tuple[Any, ...]]

    def lists(self) -> dict[str, list[tuple[Any, ...]]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_partial(self, records: list[_Partial], days: tuple[dt.date | None, ...]) -> _Dated:
        """These rows plus each partially dated record on its day of this reading (None: it
        falls outside the window and does not count), in the queries' order."""
        rows: dict[str, list[tuple[Any, ...]]] = {k: list(v) for k, v in self.lists().items()}
        for record, day in zip(records, days, strict=True):
            if day is None:
                continue
            for kind, template, day_at in record.rows:
                row = list(template)
                row[day_at] = day
                rows[kind].append(tuple(row))
        day_first = lambda r: (r[0], r[-1])  # noqa: E731  (day, source id)
        return _Dated(
            platinum=sorted(rows["platinum"], key=lambda r: (r[0], r[1])),
            worsenings=sorted(rows["worsenings"], key=day_first),
            assessments=sorted(rows["assessments"], key=day_first),
            ca125=sorted(rows["ca125"], key=day_first),
            resectability=sorted(rows["resectability"], key=day_first),
            findings=sorted(rows["findings"], key=lambda r: (r[1], r[2])),
        )


class _Recurrences:
    """The recurrences of a reading in which partially dated disease events fall on given days:
    the dated events plus those, read by the same rule as core.recurrences (rule book §3)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        partial: dict[str, list[_Partial]],
        uln: float,
        first_line: dict[str, dt.date],
        until: dict[str, dt.date],
    ) -> None:
        self.subjects = {u for u, records in partial.items() if any(r.event for r in records)}
        self.events: dict[str, list[DiseaseEvent]] = defaultdict(list)
        self.first_line = first_line
        self.until = until
        if not self.subjects:
            return
        con.register("redated_subjects", pa.table({"usubjid": sorted(self.subjects)}))
        try:
            found = con.execute(
                f"SELECT * FROM ({RECURRENCE_EVENTS_SQL}) e "
                "SEMI JOIN redated_subjects r USING (usubjid) WHERE e.day IS NOT NULL",
                {"uln": uln},
            ).fetchall()
        finally:
            con.unregister("redated_subjects")
        for usubjid, _site, day, kind, stype, sid in found:
            self.events[usubjid].append(DiseaseEvent(day, kind, stype, sid))

    def of(
        self, usubjid: str, records: list[_Partial], days: tuple[dt.date | None, ...]
    ) -> list[tuple[Any, ...]]:
        end, until = self.first_line.get(usubjid), self.until.get(usubjid)
        if end is None or until is None:
            return []  # no first line recorded: nothing can be a recurrence
        events = list(self.events.get(usubjid, ()))
        for record, day in zip(records, days, strict=True):
            if record.event is not None and day is not None:
                kind, stype = record.event
                events.append(DiseaseEvent(day, kind, stype, record.source_id))  # type: ignore[arg-type]
        found = find_recurrences(events, first_line_end=end, until=until)
        return [(r.day, r.source_id) for r in found]


def _partial_records(
    con: duckdb.DuckDBPyConnection, uln: float, batch: int
) -> dict[str, list[_Partial]]:
    """Screening records dated only to a month or year that may fall in the window, per subject,
    each as the row its dated query would give and the disease event it is for the recurrences
    (rule book §1 "Dates", §3)."""
    out: dict[str, list[_Partial]] = defaultdict(list)
    rows = con.execute(
        """
        SELECT p.usubjid, p.kind, p.earliest, p.latest, s.until, p.source_id,
               t.response, d.status, r.judgement, f.finding, f.present, p.value_u_per_ml,
               da.platinum, t.basis, p.below_lod, p.source_type,
               (SELECT min(g.line) FROM core.regimens g
                WHERE g.usubjid = p.usubjid AND NOT g.maintenance
                  AND p.earliest >= g.started_on AND p.latest <= g.ended_on) AS line
        FROM core.partial_dates p JOIN screen s USING (usubjid)
        LEFT JOIN core.tumour_assessments t ON p.kind = 'tumour_assessment'
             AND t.site_id = p.site_id AND t.source_id = p.source_id AND t.assessed_on IS NULL
        LEFT JOIN core.disease_statuses d ON p.kind = 'disease_status'
             AND d.site_id = p.site_id AND d.source_id = p.source_id AND d.assessed_on IS NULL
        LEFT JOIN core.resectability r ON p.kind = 'resectability'
             AND r.site_id = p.site_id AND r.source_id = p.source_id AND r.judged_on IS NULL
        LEFT JOIN core.screening_findings f ON p.kind = 'finding'
             AND f.site_id = p.site_id AND f.source_id = p.source_id AND f.recorded_on IS NULL
        LEFT JOIN core.drug_administrations da ON p.kind = 'dose' AND da.site_id = p.site_id
             AND da.source_type = p.source_type AND da.source_id = p.source_id
        WHERE s.batch = $batch AND p.earliest <= s.until
        ORDER BY p.usubjid, p.earliest, p.kind, p.source_id
        """,
        {"batch": batch},
    ).fetchall()
    for (usubjid, kind, earliest, latest, until, sid, response, status, judgement, finding,
         present, value, platinum, basis, below_lod, stype, line) in rows:  # fmt: skip
        options = partial_dates.days_allowed(earliest, latest, until)
        made: list[tuple[str, tuple[Any, ...], int]] = []
        if kind == "tumour_assessment" and response is not None:
            made.append(("assessments", (None, response, sid), 0))
            if response == "PD":
                made.append(("worsenings", (None, sid), 0))
        elif kind == "disease_status" and status == "worsened":
            made.append(("worsenings", (None, sid), 0))
        elif kind == "resectability" and judgement is not None:
            made.append(("resectability", (None, judgement, sid), 0))
        elif kind == "finding" and present:
            made.append(("findings", (finding, None, sid), 1))
        elif kind == "dose" and platinum:
            made.append(("platinum", (None, sid, line), 0))
        elif kind == "ca125" and value is not None:
            made.append(("ca125", (None, value, sid), 0))
        event: str | None = None
        if kind == "tumour_assessment" and basis == "recist" and response in ("CR", "PD"):
            event = "disease_free" if response == "CR" else "worsening"
        elif kind == "disease_status" and status in ("ned", "worsened"):
            event = "disease_free" if status == "ned" else "worsening"
        elif kind == "ca125" and (below_lod or (value is not None and value < uln)):
            event = "disease_free"
        elif kind == "secondary_onset":
            event = "worsening"
        if made or event:
            out[usubjid].append(
                _Partial(tuple(made), sid, options, (event, stype) if event else None)
            )
    return out


def _screening_windows(
    con: duckdb.DuckDBPyConnection,
    recurrences: dict[str, list[tuple[Any, ...]]],
    cutoff: dt.date,
    batch_of: dict[str, int],
) -> None:
    """The temporary table `screen` (usubjid, until, batch): the last day of each subject's
    screening window (rules/screening.py), which every screening query below is cut at, and
    the batch of subjects she is derived with."""
    assessed = _grouped(
        con,
        "SELECT usubjid, assessed_on FROM core.tumour_assessments WHERE assessed_on IS NOT NULL "
        "UNION ALL SELECT usubjid, judged_on FROM core.resectability WHERE judged_on IS NOT NULL",
    )
    usubjids: list[str] = []
    until: list[dt.date] = []
    for usubjid, rand, period_end, consent in con.execute(
        "SELECT usubjid, randomised_on, screening_ended_on, consented_on FROM core.subjects"
    ).fetchall():
        recs = recurrences.get(usubjid)
        usubjids.append(usubjid)
        until.append(
            screening.window_end(
                randomised=rand,
                period_end=period_end,
                consent=consent,
                screened_recurrence=recs[-1][0] if recs else None,
                assessments=(row[0] for row in assessed.get(usubjid, ())),
                cutoff=cutoff,
            )
        )
    table = pa.table(
        {
            "usubjid": pa.array(usubjids, pa.string()),
            "until": pa.array(until, pa.date32()),
            "batch": pa.array([batch_of[u] for u in usubjids], pa.int32()),
        }
    )
    con.register("screen_source", table)
    con.execute("CREATE OR REPLACE TEMP TABLE screen AS FROM screen_source")
    con.unregister("screen_source")


def _facts(
    *,
    usubjid: str,
    consent_on: dt.date | None,
    transfer: bool | None,
    age: tuple[tuple[int, int] | None, str | None],
    rs_id: str,
    recurrences: list[tuple[Any, ...]],
    has_status: bool,
    diagnoses: list[Diagnosis],
    platinum: list[tuple[Any, ...]],
    worsenings: list[tuple[Any, ...]],
    assessments: list[tuple[Any, ...]],
    ca125: list[tuple[Any, ...]],
    resectability: list[tuple[Any, ...]],
    findings: list[tuple[Any, ...]],
    uln: float,
) -> tuple[elig.ScreeningFacts, dict[str, Any]]:
    """One subject's screening facts, and the derived values reported beside the criteria."""
    recs = tuple(elig.Dated(day, sid) for day, sid in recurrences)
    doses = tuple(elig.Dated(day, sid) for day, sid, _line in platinum)
    rec = recs[-1] if recs else None
    post = [d for d in doses if rec is not None and d.day > rec.day]
    first_cycle = min((d.day for d in post), default=None)
    after = [
        (day, resp, sid) for day, resp, sid in assessments if first_cycle and day > first_cycle
    ]
    gcig = gcig_response(
        [Ca125(day, float(value), sid) for day, value, sid in ca125],
        treatment_start=first_cycle,
        uln=uln,
    )
    diagnosis = diagnoses[0] if diagnoses else None
    resect = resectability[-1] if resectability else None
    facts = elig.ScreeningFacts(
        recurrences=recs,
        has_disease_status_records=has_status,
        primary_site=diagnosis.primary_site if diagnosis else None,
        behaviour=diagnosis.behaviour if diagnosis else None,
        histology_class=diagnosis.histology_class if diagnosis else None,
        histology_code=diagnosis.histology_code if diagnosis else None,
        diagnosis_source=diagnosis.source_id if diagnosis else None,
        primary_code=diagnosis.primary_code if diagnosis else None,
        platinum_doses=doses,
        first_line_platinum=tuple(elig.Dated(day, sid) for day, sid, line in platinum if line == 1),
        worsenings=tuple(elig.Dated(day, sid) for day, sid in worsenings),
        last_assessment_after_first_cycle=(after[-1][1], after[-1][2]) if after else None,
        gcig=gcig,
        age_range=age[0],
        age_basis=age[1],
        subject_source=rs_id,
        resectability=elig.Dated(resect[0], resect[2]) if resect else None,
        resectability_judgement=resect[1] if resect else None,
        consent_on=consent_on,
        consent_data_transfer=transfer,
        interfering_malignancy=tuple(
            elig.Dated(day, sid) for kind, day, sid in findings if kind == "interfering_malignancy"
        ),
        comorbidity=tuple(
            elig.Dated(day, sid)
            for kind, day, sid in findings
            if kind == "comorbidity_precluding_surgery"
        ),
    )
    derived = elig.derive(facts)
    extra = {
        "pfi_days": derived.pfi_days,
        "post_recurrence_cycles": count_cycles(d.day for d in post) if post else None,
        "ca125_response": gcig.outcome,
        "ca125_response_date": gcig.day,
    }
    return facts, extra


def _adtte(
    con: duckdb.DuckDBPyConnection,
    study_id: str,
    batch: int,
    subjects: Iterable[Subject],
    settings: tte.Settings,
    rules: AnalysisConfig,
    out: ColumnSink,
) -> None:
    """PFS, OS and TFST of the batch's randomised subjects (rule book §7)."""

    def dated(sql: str, **params: Any) -> dict[str, list[tte.Dated]]:
        found: dict[str, list[tte.Dated]] = defaultdict(list)
        rows = con.execute(
            f"SELECT q.* FROM ({sql}) q JOIN screen b USING (usubjid) WHERE b.batch = $batch",
            {**params, "batch": batch},
        ).fetchall()
        for usubjid, day, stype, sid, element, domain, variable in rows:
            found[usubjid].append(tte.Dated(day, stype, sid, element, domain, variable))
        return found

    progression = dated(
        # RECIST (or imaging) PD by default; GCIG CA-125 progression only when configured.
        "SELECT t.usubjid, t.assessed_on, t.source_type, t.source_id, 'effective[x]', "
        "'RS', 'RSDTC' FROM core.tumour_assessments t JOIN core.subjects s USING (usubjid) "
        "WHERE t.response = 'PD' AND t.assessed_on > s.randomised_on "
        "UNION ALL "
        "SELECT usubjid, progressed_on, source_type, source_id, 'effective[x]', 'LB', "
        "'LBDTC' "
        "FROM core.progression_events WHERE basis = 'gcig' AND $gcig",
        gcig=rules.pfs_gcig_progression,
    )
    adequate = dated(
        "SELECT t.usubjid, t.assessed_on, t.source_type, t.source_id, 'effective[x]', "
        "'RS', 'RSDTC' FROM core.tumour_assessments t JOIN core.subjects s USING (usubjid) "
        "WHERE t.response <> 'NE' AND t.assessed_on > s.randomised_on"
    )
    therapy = dated(
        # New anticancer therapy (rule book §7): a non-maintenance drug given after randomisation
        # that is not one of the line in progress at randomisation (the trial's own chemotherapy,
        # however long its pause around surgery), nor maintenance.
        """
        WITH at_rand AS (
            SELECT r.usubjid, string_split(arg_max(r.drugs, (r.started_on, r.line)), ', ') AS drugs
            FROM core.regimens r JOIN core.subjects s USING (usubjid)
            WHERE NOT r.maintenance AND r.started_on <= s.randomised_on GROUP BY 1
        )
        SELECT d.usubjid, d.started_on, d.source_type, d.source_id, d.dated_by, 'CM', 'CMSTDTC'
        FROM core.drug_administrations d JOIN core.subjects s USING (usubjid)
        LEFT JOIN at_rand a USING (usubjid)
        WHERE d.started_on > s.randomised_on AND NOT d.maintenance_capable
          AND NOT list_contains(coalesce(a.drugs, []), d.drug)
        """
    )
    alive = dated(
        """
        SELECT usubjid, max(c.day), arg_max(c.source_type, (c.day, c.source_type, c.source_id)),
               arg_max(c.source_id, (c.day, c.source_type, c.source_id)),
               arg_max(c.element, (c.day, c.source_type, c.source_id)),
               arg_max(c.domain, (c.day, c.source_type, c.source_id)),
               arg_max(c.variable, (c.day, c.source_type, c.source_id))
        FROM (
            SELECT usubjid, assessed_on AS day, source_type, source_id,
                   'effective[x]' AS element, 'RS' AS domain, 'RSDTC' AS variable
            FROM core.tumour_assessments
            UNION ALL
            SELECT usubjid, measured_on, source_type, source_id, 'effective[x]', 'LB',
                   'LBDTC'
            FROM core.ca125_measurements
            UNION ALL
            SELECT usubjid, started_on, source_type, source_id, dated_by, 'CM', 'CMSTDTC'
            FROM core.drug_administrations
            UNION ALL
            SELECT usubjid, assessed_on, source_type, source_id, 'effective[x]', 'RS',
                   'RSDTC'
            FROM core.disease_statuses
        ) c JOIN core.subjects s USING (usubjid)
        -- the last contact inside the window: a subject seen after it was alive all through it
        -- (the latest contact of all would fall outside and leave no censoring date)
        WHERE c.day <= $cutoff AND c.day <= s.randomised_on + CAST($window AS INTEGER)
        GROUP BY usubjid
        """,
        cutoff=settings.data_cutoff,
        window=settings.window_days,
    )
    for subject in subjects:
        usubjid, rand, died = subject.usubjid, subject.randomised_on, subject.died_on
        if rand is None:
            continue
        rs_id = subject.source_id
        start = tte.Dated(rand, "ResearchSubject", rs_id, "period.start", "ADSL", "RANDDT")
        last_alive = alive.get(usubjid, [])
        timeline = tte.Timeline(
            start=rand,
            start_source=start,
            progression=tuple(progression.get(usubjid, [])),
            # The Patient id is not exported (it can be the site's MRN): SRCID stays empty.
            death=(
                (tte.Dated(died, "Patient", "", "deceasedDateTime", "ADSL", "DTHDT"),)
                if died
                else ()
            ),
            subsequent_therapy=tuple(therapy.get(usubjid, [])),
            adequate_assessments=tuple(adequate.get(usubjid, [])),
            last_known_alive=last_alive[0] if last_alive else None,
        )
        for paramn, param in enumerate(tte.PARAMETERS, start=1):
            row = tte.derive(
                param, timeline, settings, censor_new_therapy=rules.pfs_censor_new_therapy
            )
            out.add(
                {
                    "STUDYID": study_id, "USUBJID": usubjid, "PARAMCD": row.paramcd,
                    "PARAM": row.param, "PARAMN": paramn, "STARTDT": row.startdt,
                    "ADT": row.adt, "AVAL": row.aval,
                    "AVALU": "DAYS", "CNSR": row.cnsr, "EVNTDESC": row.evntdesc,
                    "CNSDTDSC": row.cnsdtdsc, "SRCDOM": row.srcdom, "SRCVAR": row.srcvar,
                    "SRCFTYP": row.fhir_type, "SRCFELM": row.fhir_element,
                    "SRCSEQ": None, "SRCID": row.srcid or None, "RULE": row.rule,
                }
            )  # fmt: skip


def subject_id(usubjid: str) -> str:
    """SUBJID: the subject's id within the study, USUBJID without its study prefix
    (RESCUE-A-0001 → A-0001)."""
    return usubjid.split("-", 1)[1] if "-" in usubjid else usubjid


# Per randomised subject, the first secondary cytoreductive surgery and the first administered
# dose on or after randomisation and before her first progression (RECIST or imaging PD): all
# that the actual-arm rule needs of each (it checks the cut-off). Treatment after progression
# (a crossover surgery, later lines) and drugs only ordered or reported are not the trial's.
FIRST_TREATMENTS_SQL = """
WITH progressed AS (
    SELECT t.usubjid, min(t.assessed_on) AS first_on
    FROM core.tumour_assessments t JOIN core.subjects s ON s.usubjid = t.usubjid
    WHERE t.response = 'PD' AND t.assessed_on > s.randomised_on
    GROUP BY t.usubjid
), surgery AS (
    SELECT g.usubjid, min(g.performed_on) AS first_on
    FROM core.surgeries g JOIN core.subjects s ON s.usubjid = g.usubjid
    LEFT JOIN progressed p ON p.usubjid = g.usubjid
    WHERE g.surgery_type = 'secondary' AND g.performed_on >= s.randomised_on
      AND (p.first_on IS NULL OR g.performed_on < p.first_on)
    GROUP BY g.usubjid
), dose AS (
    SELECT d.usubjid, min(d.started_on) AS first_on
    FROM core.drug_administrations d JOIN core.subjects s ON s.usubjid = d.usubjid
    LEFT JOIN progressed p ON p.usubjid = d.usubjid
    WHERE d.kind = 'administration' AND d.started_on >= s.randomised_on
      AND (p.first_on IS NULL OR d.started_on < p.first_on)
    GROUP BY d.usubjid
)
SELECT s.usubjid, surgery.first_on, dose.first_on
FROM core.subjects s
LEFT JOIN surgery ON surgery.usubjid = s.usubjid
LEFT JOIN dose ON dose.usubjid = s.usubjid
WHERE s.randomised_on IS NOT NULL
"""


def _first_treatments(
    con: duckdb.DuckDBPyConnection,
) -> dict[str, tuple[dt.date | None, dt.date | None]]:
    return {u: (surgery, dose) for u, surgery, dose in con.execute(FIRST_TREATMENTS_SQL).fetchall()}


def cdisc_sex(gender: str | None) -> str:
    """CDISC SEX (codelist C66731) from FHIR administrative gender: female F, male M; other,
    unknown and missing U (administrative gender says nothing of a sex of development, so
    UNDIFFERENTIATED is never inferred)."""
    return {"female": "F", "male": "M"}.get((gender or "").strip().lower(), "U")


def _adsl(
    study_id: str,
    subjects: Iterable[Subject],
    eligible_of: dict[str, str],
    ages: dict[str, tuple[tuple[int, int] | None, str | None]],
    first_treatments: dict[str, tuple[dt.date | None, dt.date | None]],
    *,
    cutoff: dt.date,
    window_days: int,
) -> ColumnSink:
    out = ColumnSink(tables.adsl)
    for subject in subjects:
        usubjid, site, arm = subject.usubjid, subject.site_id, subject.arm
        rand = subject.randomised_on if arm else None
        flag = "Y" if rand is not None else "N"
        # AGE: completed years at consent (else randomisation), when the birth date decides it
        bounds = ages.get(usubjid, (None, None))[0]
        age = bounds[0] if bounds is not None and bounds[0] == bounds[1] else None
        planned = ARM_TEXT.get(arm) if arm else None
        surgery, dose = first_treatments.get(usubjid, (None, None))
        # an arm with no randomisation date: what she received cannot be placed, so no claim
        actual = treatment.actual_arm(
            randomised_on=rand, cutoff=cutoff,
            secondary_surgeries=[surgery] if surgery else [], doses=[dose] if dose else [],
        )  # fmt: skip
        received = ARM_TEXT.get(actual) if actual else None
        out.add(
            {
                "STUDYID": study_id, "USUBJID": usubjid, "SUBJID": subject_id(usubjid),
                "SITEID": site, "AGE": age, "AGEU": "YEARS" if age is not None else None,
                "SEX": cdisc_sex(subject.sex), "RACE": subject.race, "ARMCD": arm, "ARM": planned,
                "ACTARMCD": actual, "ACTARM": received,
                "ARMNRS": None if arm and rand is None else treatment.arm_null_reason(
                    randomised=arm is not None, actual=actual),
                "TRT01P": planned, "TRT01A": received,
                "RANDDT": rand, "RANDFL": flag, "ITTFL": flag,
                "SAFFL": "Y" if actual else "N",
                "ELIGFL": {"yes": "Y", "no": "N"}.get(eligible_of.get(usubjid, ""), "U"),
                "DTHFL": "Y" if subject.died_on else None, "DTHDT": subject.died_on,
                "EOSSTT": treatment.end_of_study_status(
                    randomised_on=rand, status=subject.subject_status,
                    ended_on=subject.study_ended_on, died_on=subject.died_on,
                    window_days=window_days, cutoff=cutoff,
                ),
            }
        )  # fmt: skip
    return out
