"""The typed run report: its exit code follows from its parts, it reads back what the steps
recorded (a retried step once, loads by site), and its shape changes only on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from rescue_pipeline import run_report
from rescue_pipeline.run_report import (
    CorePart,
    LoadPart,
    PublicationPart,
    QualityPart,
    RunReport,
    ValidationPart,
)
from rescue_pipeline.warehouse.database import ensure_schema

SHAPE = Path(__file__).parent / "data" / "run_report_shape.json"


def _ok() -> RunReport:
    return RunReport(
        "r1",
        loads=[LoadPart("site-a", ok=True, received=10, accepted=9, quarantined=1)],
        core=CorePart(ok=True, rows={"subjects": 3}),
        quality=QualityPart(ok=True, run_id="q", checks=5),
        publication=PublicationPart(ok=True, published=("site-a",)),
        validation=ValidationPart(ok=True, validated=9),
    )


def test_a_run_where_every_part_went_well_exits_0() -> None:
    assert _ok().exit_code == 0


def test_a_held_site_exits_3_even_when_a_load_also_failed() -> None:
    report = _ok()
    report.loads.append(LoadPart("site-b", ok=False, error="site site-b: source folder gone"))
    report.publication = PublicationPart(ok=True, held={"site-a": "1 critical check(s) failed"})
    assert report.exit_code == 3


def test_a_refused_publish_exits_3() -> None:
    report = _ok()
    report.publication = PublicationPart(ok=False, refused="publish refused: 1 critical check")
    assert report.exit_code == 3


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.loads.append(LoadPart("site-b", ok=False, error="gone")),
        lambda r: setattr(r, "core", CorePart(ok=False, error="Out of Memory Error")),
        lambda r: setattr(r, "validation", ValidationPart(ok=False, error="worker died")),
        lambda r: r.errors.append("report: disk full"),
    ],
    ids=["load", "core", "validation", "unrecorded"],
)
def test_any_other_failure_exits_1(change) -> None:  # type: ignore[no-untyped-def]
    report = _ok()
    change(report)
    assert report.exit_code == 1


def test_the_report_reads_back_what_the_steps_recorded(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)

    def put(part: object, run: str = "d1", report_id: str = "r1") -> None:
        run_report.record(con, report_id=report_id, dagster_run_id=run, job="j", part=part)

    put(LoadPart("site-b", ok=True, received=4))
    put(LoadPart("site-a", ok=False, error="first attempt"))
    put(LoadPart("site-a", ok=True, full=True, received=7))  # the retried step
    put(QualityPart(ok=True, run_id="q1", suites_sha256="ab", checks=3,
                    critical_failures=("x_known at site-a",)))  # fmt: skip
    put(PublicationPart(ok=True, held={"site-a": "why"}, held_since={"site-a": None}), "d2")
    put(CorePart(ok=True), report_id="another run")
    report = run_report.read(con, "r1")
    assert [(p.site_id, p.ok, p.received) for p in report.loads] == [
        ("site-b", True, 4), ("site-a", True, 7),
    ]  # fmt: skip
    assert report.quality == QualityPart(ok=True, run_id="q1", suites_sha256="ab", checks=3,
                                         critical_failures=("x_known at site-a",))  # fmt: skip
    assert report.core is None  # another run's part
    assert report.exit_code == 3
    assert run_report.latest_report_id(con) == "another run"
    body = report.to_json()
    assert body["exit_code"] == 3 and body["publication"]["held"] == {"site-a": "why"}
    json.dumps(body)  # plain JSON


def test_the_report_shape_is_the_recorded_one() -> None:
    """Monitoring reads the report's JSON: a field renamed or retyped must show here (write the
    new shape to tests/data/run_report_shape.json when the change is meant)."""
    assert run_report.report_shape() == json.loads(SHAPE.read_text())
