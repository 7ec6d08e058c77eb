"""The sponsors' report: what it counts, and what it must never show."""

from __future__ import annotations

import csv
import datetime as dt
import re

import duckdb

from rescue_pipeline.analysis.build import ARM_TEXT
from rescue_pipeline.site_load import work_db
from tests.report.conftest import patients, sponsor_text


def _cells(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def test_the_overview_counts_what_the_warehouses_hold(reported) -> None:
    config, _truth, files = reported
    rows = {r[0]: r for r in _cells((files.sponsors / "index.html").read_text(), "sites") if r}
    assert set(rows) == {"site-a", "site-b", "site-c"}
    with work_db(config, read_only=True) as con:
        for site, received, new_versions, quarantined, loads in con.execute(
            "SELECT site_id, sum(received), sum(new), "
            "(SELECT count(DISTINCT bytes_sha256) FROM raw.quarantine q "
            " WHERE q.site_id = l.site_id), count(DISTINCT load_id) "
            "FROM (SELECT site_id, load_id, received, new_versions AS new FROM raw.loads "
            "      UNION ALL SELECT site_id, load_id, received, recorded FROM raw.deletion_loads"
            ") l GROUP BY 1"
        ).fetchall():
            assert rows[site][2] == str(loads)
            assert rows[site][3] == f"{received:,}"  # every line read
            assert rows[site][4] == f"{new_versions:,}"  # each version (or deletion) once
            assert rows[site][5].startswith(f"{quarantined:,} (")  # each bad line once
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        for site, subjects, randomised in con.execute(
            "SELECT site_id, count(*), count(randomised_on) FROM core.subjects GROUP BY 1"
        ).fetchall():
            assert rows[site][6:8] == [str(subjects), str(randomised)]
        eligibility = {
            r[0]: r[1:]
            for r in _cells((files.sponsors / "index.html").read_text(), "eligibility")
            if r
        }
        for site, yes, no, unknown in con.execute(
            "SELECT site_id, count(*) FILTER (eligible = 'yes'), count(*) FILTER (eligible = 'no'),"
            " count(*) FILTER (eligible = 'unknown') FROM analysis.eligibility_summary GROUP BY 1"
        ).fetchall():
            assert eligibility[site] == [str(yes), str(no), str(unknown)]


def test_a_site_page_shows_each_load_and_why_lines_were_quarantined(reported) -> None:
    config, _truth, files = reported
    page = (files.sponsors / "site-site-a.html").read_text()
    loads = [r for r in _cells(page, "loads") if r]
    # newest first: the second drop re-read the changed Observation file, its bad line included:
    # one new line (quarantined), the others held already
    observations = config.site("site-a").source.path / "Observation.ndjson"
    lines = len(observations.read_bytes().splitlines())
    assert len(loads) == 2
    assert loads[0][1:] == [f"{lines:,}", "0", "1", f"{lines - 1:,}"]
    reasons = {r[0]: int(r[2]) for r in _cells(page, "quarantine") if len(r) == 3}
    with work_db(config, read_only=True) as con:
        expected = dict(
            con.execute(
                "SELECT reason, count(DISTINCT bytes_sha256) FROM raw.quarantine "
                "WHERE site_id = 'site-a' GROUP BY 1"
            ).fetchall()
        )
    assert reasons == expected and "not_json" in reasons
    headline = re.search(r'id="quarantined-lines">([\d,]+) distinct', page)
    assert headline and int(headline.group(1).replace(",", "")) == sum(reasons.values())
    assert "2 loads, " in page  # every count says which loads it covers
    criteria = [r[0] for r in _cells(page, "criteria") if r]
    assert criteria[:2] == ["IN01", "IN02"] and criteria[-1] == "EX08"  # the protocol's order
    units = [u for u in _cells(page, "ca125-units") if u]
    assert any(u[1].startswith("no") for u in units)  # the injected unconvertible unit
    for plot in ("loads", "quarantine", "completeness"):
        assert f'src="plots/site-a-{plot}.svg"' in page
        assert (files.sponsors / "plots" / f"site-a-{plot}.svg").read_text().startswith("<?xml")


def test_every_suite_has_a_page_with_each_expectation_explained(reported) -> None:
    _config, _truth, files = reported
    suites = sorted(p.name for p in files.sponsors.glob("suite-*.html"))
    assert len(suites) == 14
    page = (files.sponsors / "suite-core-ca125_measurements.html").read_text()
    assert "CA-125 units convert to U/mL" in page and "failed" in page and "Warning:" in page
    for name in suites:  # every check says what it observed, at every site
        articles = (files.sponsors / name).read_text().split('<article class="expectation">')
        for article in articles[1:]:
            rows = re.findall(r"<tr>(.*?)</tr>", article, flags=re.S)
            cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
            observed = [c[3].strip() for c in cells if len(c) == 4]
            assert observed and all(observed), (name, article[:120])


def test_the_data_queries_list_every_finding_per_site_apart_from_the_sponsors_pages(
    reported,
) -> None:
    config, _truth, files = reported
    assert files.queries.parent == files.sponsors.parent and files.queries != files.sponsors
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        expected = dict(
            con.execute("SELECT site_id, count(*) FROM quality.findings GROUP BY 1").fetchall()
        )
        keys = {k for (k,) in con.execute("SELECT record_key FROM quality.findings").fetchall()}
    for site, n in expected.items():
        with (files.queries / site / "queries.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == n == files.query_files[site]
        assert {r["severity"] for r in rows} >= {"quarantine", "warning"}
    assert any(r.endswith(":1") or ":" in r for r in keys)  # file:line for quarantined lines
    sponsors = "\n".join(sponsor_text(files).values())
    assert not [k for k in keys if k in sponsors]  # record keys stay with the sites


def test_the_report_holds_no_phi_no_subject_dates_and_nothing_by_arm(reported) -> None:
    config, _truth, files = reported
    text = sponsor_text(files)
    everything = "\n".join(text.values())
    people = patients(config)
    assert people
    forbidden: set[str] = set()
    for p in people:
        for name in p.get("name", []):
            forbidden |= {n for n in [name.get("family"), *name.get("given", [])] if n}
        forbidden |= {i["value"] for i in p.get("identifier", []) if i.get("value")}
        if p.get("birthDate"):
            forbidden.add(p["birthDate"])
    assert len(forbidden) > 2 * len(people)  # names, MRNs and birth dates were all read
    found = sorted(f for f in forbidden if re.search(rf"\b{re.escape(f)}\b", everything))
    assert found == []
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        usubjids = {u for (u,) in con.execute("SELECT usubjid FROM core.subjects").fetchall()}
        dates = {
            d.isoformat()
            for (d,) in con.execute(
                "SELECT randomised_on FROM core.subjects UNION SELECT consented_on FROM "
                "core.subjects UNION SELECT died_on FROM core.subjects UNION SELECT measured_on "
                "FROM core.ca125_measurements UNION SELECT assessed_on FROM core.tumour_assessments"
                " UNION SELECT progressed_on FROM core.progression_events UNION SELECT ADT FROM "
                "analysis.adtte"
            ).fetchall()
            if d is not None
        }
    assert not [u for u in usubjids if u in everything]
    today = dt.datetime.now(dt.UTC).date()
    report_days = {(today - dt.timedelta(days=n)).isoformat() for n in range(2)}
    assert not sorted(d for d in dates - report_days if d in everything)
    for label in (*ARM_TEXT.values(), "TRT01P", "arm A", "arm B", "Kaplan", "median PFS",
                  "median survival", "hazard", "PFS events"):  # fmt: skip
        assert label not in everything, label
    # the only split by arm is the allocation in the screening flow (CONSORT), in its table
    index = text[files.sponsors / "index.html"]
    assert "allocated to A" in index and "allocated to B" in index
    assert index.count("allocated to A") == 1 and index.count("allocated to B") == 1
    assert "<script" not in everything  # nothing runs: a static site


def test_after_a_full_reload_a_site_counts_each_line_once(tmp_path) -> None:
    """A full reload reads every file again: the page counts those lines as held already, the
    new data is what the files hold, and the per-reason table adds up to the headline."""
    from rescue_pipeline.analysis.build import derive_analysis
    from rescue_pipeline.core.build import build_core
    from rescue_pipeline.quality.gate import run_quality
    from rescue_pipeline.report.render import write_report
    from rescue_pipeline.site_load import load_site, publish_warehouse
    from tests.cohort import KEY, TODAY, build_cohort

    config, _ = build_cohort(tmp_path / "c", patients=40, seed=31, fault_rate=0.05)
    site = config.site("site-a")
    load_site(config, site, full=True)
    with work_db(config) as con:
        build_core(con, config, key=KEY, today=TODAY)
        derive_analysis(con, config, today=TODAY)
        publish_warehouse(config, run_quality(con, config, today=TODAY))
    files = write_report(config.warehouse, tmp_path / "report", study_id=config.study_id,
                         site_ids=[s.id for s in config.sites])  # fmt: skip
    page = (files.sponsors / "site-site-a.html").read_text()
    source = site.source.path  # type: ignore[union-attr]
    lines = sum(
        1 for f in source.glob("*.ndjson") for line in f.read_bytes().splitlines() if line.strip()
    )

    def figure(element: str) -> int:
        found = re.search(rf'id="{element}">([\d,]+)', page)
        assert found, element
        return int(found.group(1).replace(",", ""))

    with work_db(config, read_only=True) as con:
        held = con.execute(
            "SELECT (SELECT count(*) FROM raw.fhir_resource_versions WHERE site_id = 'site-a') "
            "+ (SELECT count(DISTINCT bytes_sha256) FROM raw.quarantine "
            "   WHERE site_id = 'site-a')"
        ).fetchall()[0][0]
    distinct = len({line for f in source.glob("*.ndjson") for line in f.read_bytes().splitlines()
                    if line.strip()})  # fmt: skip
    new = figure("new-lines")
    assert new == held and new <= distinct <= lines  # each version and bad line once
    assert figure("already-held") == 2 * lines - new  # read twice, new once
    reasons = {r[0]: int(r[2]) for r in _cells(page, "quarantine") if len(r) == 3}
    assert figure("quarantined-lines") == sum(reasons.values()) > 0
    loads = [r for r in _cells(page, "loads") if r]
    assert loads[0][1:] == [f"{lines:,}", "0", "0", f"{lines:,}"]  # the reload: nothing new


def test_the_overview_shows_cut_off_flow_enrolment_kris_and_completeness(reported) -> None:
    from rescue_pipeline.quality.kri import INDICATORS

    config, _truth, files = reported
    page = (files.sponsors / "index.html").read_text()
    flow = {r[0]: int(r[1]) for r in _cells(page, "flow") if len(r) == 2}
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        cutoff = con.execute(
            "SELECT settings->>'data_cutoff' FROM analysis.derivation_runs "
            "ORDER BY derived_at DESC LIMIT 1"
        ).fetchall()[0][0]
        screened, eligible, no, unknown = con.execute(
            "SELECT count(*), count(*) FILTER (eligible = 'yes'), count(*) FILTER (eligible = "
            "'no'), count(*) FILTER (eligible = 'unknown') FROM analysis.eligibility_summary"
        ).fetchall()[0]
        arms = dict(con.execute(
            "SELECT ARMCD, count(*) FROM analysis.adsl WHERE ARMCD IS NOT NULL GROUP BY 1"
        ).fetchall())  # fmt: skip
        randomised_by_site = dict(con.execute(
            "SELECT site_id, count(*) FROM core.subjects WHERE randomised_on IS NOT NULL "
            "AND arm IS NOT NULL GROUP BY 1"
        ).fetchall())  # fmt: skip
    assert f"Data cut-off: <strong>{cutoff}</strong>" in page
    assert (flow["Screened"], flow["Eligible"], flow["Not eligible"]) == (screened, eligible, no)
    assert flow["Eligibility unknown (missing data)"] == unknown
    assert flow["Randomised"] == sum(arms.values()) and flow["allocated to A"] == arms["A"]
    enrolment = {r[0]: int(r[1]) for r in _cells(page, "enrolment") if len(r) == 3}
    assert enrolment == randomised_by_site
    # counts by quarter: no month of a subject's randomisation is shown
    enrolment_html = page.split('id="enrolment"', 1)[1].split("</table>", 1)[0]
    assert not re.search(r"\b20\d\d-\d\d\b", enrolment_html)
    kri_rows = [r for r in _cells(page, "kri") if r]
    assert len(kri_rows) == len(INDICATORS) and all(len(r) == 2 + 3 for r in kri_rows)
    figures = re.findall(r'<img src="(plots/[^"]+)" alt="([^"]+)">', page)
    assert [src for src, _ in figures] == [
        "plots/flow.svg", "plots/enrolment.svg", "plots/kri.svg", "plots/completeness.svg"
    ]  # fmt: skip
    for src, alt in figures:
        svg = (files.sponsors / src).read_text()
        assert alt and svg.count("<path") > 20, src  # drawn, not an empty frame


def test_data_queries_list_record_locations_in_number_order(reported) -> None:
    from rescue_pipeline.report.render import natural

    assert sorted(["f:3323", "f:840", "f:1449"], key=natural) == ["f:840", "f:1449", "f:3323"]
    _config, _truth, files = reported
    for path in files.queries.glob("*/queries.csv"):
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        groups: dict[tuple[str, ...], list[str]] = {}
        for r in rows:
            groups.setdefault((r["severity"], r["table"], r["check"]), []).append(r["record"])
        for records in groups.values():
            assert records == sorted(records, key=natural), path
        assert any(len(g) > 1 for g in groups.values())  # something to order


def test_a_file_re_sent_in_another_order_adds_no_new_bad_line(tmp_path) -> None:
    from rescue_pipeline.quality.gate import run_quality
    from rescue_pipeline.report.render import write_report
    from rescue_pipeline.site_load import load_site, publish_warehouse
    from tests.cohort import TODAY, build_cohort

    config, _ = build_cohort(tmp_path / "c", patients=40, seed=33, fault_rate=0.05)
    site = config.site("site-b")

    def quarantined() -> int:
        with work_db(config) as con:
            publish_warehouse(config, run_quality(con, config, today=TODAY))
        files = write_report(config.warehouse, tmp_path / "report", study_id=config.study_id,
                             site_ids=[s.id for s in config.sites])  # fmt: skip
        page = (files.sponsors / "site-site-b.html").read_text()
        found = re.search(r'id="quarantined-lines">([\d,]+)', page)
        assert found
        return int(found.group(1).replace(",", ""))

    before = quarantined()
    assert before > 0
    observations = site.source.path / "Observation.ndjson"  # type: ignore[union-attr]
    lines = observations.read_bytes().splitlines()
    observations.write_bytes(b"\n".join(reversed(lines)) + b"\n")  # the same lines, re-sent
    load_site(config, site)
    assert quarantined() == before  # each bad line's content once
