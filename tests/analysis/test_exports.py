"""Exports of the analysis datasets: Parquet, CSV, SAS XPT v5 and define.json, on real files.

The analysis schema is built by hand in a DuckDB file from the data dictionary's DDL, with a few
subjects chosen to exercise missing values, dates, evidence lists and a randomised arm each.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pyreadstat
import pytest

from rescue_pipeline.analysis import define
from rescue_pipeline.analysis.exports import ExportError, export
from rescue_pipeline.rules.eligibility import CRITERIA
from rescue_pipeline.warehouse.analysis_tables import ANALYSIS_TABLES
from rescue_pipeline.warehouse.database import ddl

STUDY = "RESCUE"
PATIENT_ID = "pat-secret-4711"  # a site key that must appear in no export
D = dt.date


def make_db(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA analysis")
    for statement in ddl(ANALYSIS_TABLES):
        con.execute(statement)
    con.executemany(
        "INSERT INTO analysis.adsl (STUDYID, USUBJID, SUBJID, SITEID, ARMCD, ARM, ARMNRS, "
        "TRT01P, RANDDT, RANDFL, ITTFL, AGE, AGEU, ELIGFL, SEX, DTHFL, DTHDT, RACE) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (STUDY, "RESCUE-A-0001", "A-0001", "site-a", "A",
             "Secondary cytoreductive surgery + chemotherapy", None,
             "Secondary cytoreductive surgery + chemotherapy", D(2024, 3, 1), "Y", "Y", 61,
             "YEARS", "Y", "F", "Y", D(2025, 2, 1), "WHITE"),
            (STUDY, "RESCUE-A-0002", "A-0002", "site-a", "B", "Chemotherapy alone", None,
             "Chemotherapy alone", D(2024, 4, 15), "Y", "Y", 70, "YEARS", "N", "F", None, None,
             None),
            (STUDY, "RESCUE-B-0001", "B-0001", "site-b", None, None, "SCREEN FAILURE", None,
             None, "N", "N", None, None, "U", "U", None, None, None),
        ],
    )  # fmt: skip
    con.executemany(
        "INSERT INTO analysis.adtte VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                STUDY,
                "RESCUE-A-0001",
                "PFS",
                "Progression-free survival (days)",
                1,
                D(2024, 3, 1),
                D(2024, 9, 1),
                185,
                "DAYS",
                0,
                "Documented progression",
                None,
                "RS",
                "RSDTC",
                None,
                "obs-1",
                4,
                "Observation",
                "valueCodeableConcept",
            ),
            (
                STUDY,
                "RESCUE-A-0002",
                "PFS",
                "Progression-free survival (days)",
                1,
                D(2024, 4, 15),
                D(2024, 4, 15),
                1,
                "DAYS",
                1,
                None,
                "Randomisation (no adequate assessment)",
                "ADSL",
                "RANDDT",
                None,
                "rs-2",
                5,
                "ResearchSubject",
                "period.start",
            ),
        ],
    )
    rows = []
    for usubjid, site in (("RESCUE-A-0001", "site-a"), ("RESCUE-A-0002", "site-a")):
        for code in CRITERIA:
            evidence = "obs-1,cond-2, proc-3" if code == "IN01" else None
            rows.append(
                (
                    usubjid,
                    code,
                    "met" if code.startswith("IN") else "not_met",
                    "PFI 200 days" if code == "IN02" else None,
                    evidence,
                    site,
                )
            )
    con.executemany("INSERT INTO analysis.eligibility VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany(
        "INSERT INTO analysis.eligibility_summary VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("RESCUE-A-0001", "yes", None, None, 200, 3, "response", D(2024, 2, 1), "site-a"),
            (
                "RESCUE-A-0002",
                "no",
                "IN02,EX05",
                "IN03",
                100,
                None,
                "not_evaluable",
                None,
                "site-a",
            ),
        ],
    )
    con.execute(
        "INSERT INTO analysis.derivation_runs VALUES "
        "('2026-06-30T00:00:00Z', '{\"data_cutoff\": \"2026-06-30\"}', '{}', 0.1)"
    )
    # A column added by hand that holds a site key: exports select only declared variables.
    con.execute("ALTER TABLE analysis.adsl ADD COLUMN patient_id VARCHAR")
    con.execute("UPDATE analysis.adsl SET patient_id = ?", [PATIENT_ID])
    return con


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    return make_db(tmp_path / "rescue.work.duckdb")


def expected(con: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, Any]]:
    """The dataset's rows straight from the analysis schema, via the spec's own query."""
    spec = next(s for s in define.dataset_specs() if s.name == name)
    con.register("export_criteria", pa.table(define.criteria_rows()))
    sql = spec.select_sql()
    rel = con.sql(sql, params={"study_id": STUDY} if "$study_id" in sql else None)
    rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    con.unregister("export_criteria")
    return rows


DATASETS = ("ADSL", "ADTTE", "ADELIG", "ADELIGEV", "ADELIGSM")


def test_xpt_round_trip_gives_same_values_dates_and_labels(con, tmp_path):
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    assert set(result.files) == set(DATASETS)
    for spec in define.dataset_specs():
        frame, meta = pyreadstat.read_xport(str(result.files[spec.name]))
        assert meta.table_name == spec.name
        assert meta.file_label == spec.label
        assert meta.column_names_to_labels == {v.name: v.label for v in spec.variables}
        for v in spec.variables:
            # SAS writes the format as DATE9. and readers differ on the dot (pyreadstat
            # 1.3.8 keeps it): what matters is the format name and its width.
            fmt = meta.original_variable_types.get(v.name) or ""
            if v.kind == "date":
                assert fmt.rstrip(".") == "DATE9", (v.name, fmt)
            else:
                assert not fmt.upper().startswith("DATE"), (v.name, fmt)
        got = frame.to_dict("records")
        want = expected(con, spec.name)
        assert len(got) == len(want) == result.rows[spec.name]
        for g, w in zip(got, want, strict=True):
            for v in spec.variables:
                a, b = g[v.name], w[v.name]
                if b is None:  # SAS: blank text, missing numeric
                    assert a == "" if v.kind == "text" else (a is None or math.isnan(a)), v.name
                elif v.kind in ("integer", "float"):
                    assert a == float(b), v.name
                else:
                    assert a == b, (spec.name, v.name)  # dates come back as datetime.date


def test_paramcd_carries_the_adamig_label_and_its_own_codelist_per_dataset(con, tmp_path):
    """The same name holds a criterion in ADELIG and a time-to-event parameter in ADTTE: the
    ADaMIG label in both, the values told apart by each dataset's codelist."""
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    for name in ("ADTTE", "ADELIG"):
        meta = pyreadstat.read_xport(str(result.files[name]), metadataonly=True)[1]
        assert meta.column_names_to_labels["PARAMCD"] == "Parameter Code"
        assert meta.column_names_to_labels["AVALC" if name == "ADELIG" else "AVAL"] in (
            "Analysis Value (C)",
            "Analysis Value",
        )
    datasets = {d["name"]: d for d in json.loads(result.define.read_text())["datasets"]}
    codelists = {
        name: {v["name"]: v["codelist"] for v in datasets[name]["variables"]}["PARAMCD"]
        for name in ("ADTTE", "ADELIG")
    }
    assert codelists == {"ADTTE": "CL.PARAMCD.TTE", "ADELIG": "CL.PARAMCD.ELIG"}


def test_evidence_is_split_one_source_id_per_row(con, tmp_path):
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    frame, _ = pyreadstat.read_xport(str(result.files["ADELIGEV"]))
    first = frame[frame.USUBJID == "RESCUE-A-0001"]
    assert first[["PARAMCD", "SRCSEQ", "SRCID"]].values.tolist() == [
        ["IN01", 1.0, "obs-1"],
        ["IN01", 2.0, "cond-2"],
        ["IN01", 3.0, "proc-3"],
    ]
    adelig, _ = pyreadstat.read_xport(str(result.files["ADELIG"]))
    assert adelig.PARAMCD.tolist()[:14] == list(CRITERIA)  # protocol order
    assert "EVIDENCE" not in adelig.columns


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_parquet_and_csv_read_back_equal(con, tmp_path, fmt):
    result = export(con, study_id=STUDY, fmt=fmt, out=tmp_path / fmt)
    meta = json.loads(result.define.read_text())
    types = {"text": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "date": "DATE"}
    for dataset in meta["datasets"]:
        path = str(result.files[dataset["name"]])
        if fmt == "parquet":
            cur = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
        else:  # types from define.json: it must describe the file well enough to read it
            columns = {v["name"]: types[v["type"]] for v in dataset["variables"]}
            cur = duckdb.sql(f"SELECT * FROM read_csv('{path}', header=true, columns={columns})")
        got = [dict(zip(cur.columns, r, strict=True)) for r in cur.fetchall()]
        assert got == expected(con, dataset["name"]), dataset["name"]
    if fmt == "csv":
        header, first = result.files["ADSL"].read_text().splitlines()[:2]
        assert header.startswith(
            "STUDYID,USUBJID,SUBJID,SITEID,AGE,AGEU,SEX,RACE,ARMCD,ARM,ACTARMCD,ACTARM,ARMNRS"
        )
        assert ",2024-03-01," in first  # ISO dates
    else:
        schema = pq.read_schema(result.files["ADTTE"])
        assert schema.field("ADT").metadata[b"label"] == b"Analysis Date"


@pytest.mark.parametrize("fmt", ["parquet", "csv", "xpt"])
def test_no_direct_identifier_in_any_export(con, tmp_path, fmt):
    result = export(con, study_id=STUDY, fmt=fmt, out=tmp_path / fmt)
    forbidden = {n.upper() for n in define.DIRECT_IDENTIFIERS}
    for path in [*result.files.values(), result.define]:
        assert PATIENT_ID.encode() not in path.read_bytes(), path
    meta = json.loads(result.define.read_text())
    for dataset in meta["datasets"]:
        names = {v["name"] for v in dataset["variables"]}
        assert not names & forbidden
        spec = next(s for s in define.dataset_specs() if s.name == dataset["name"])
        assert names == {v.name for v in spec.variables}


def test_define_lists_every_dataset_and_variable_exported(con, tmp_path):
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    meta = json.loads(result.define.read_text())
    assert meta["study"]["studyid"] == STUDY
    assert meta["derivation_run"]["settings"] == {"data_cutoff": "2026-06-30"}
    assert [d["name"] for d in meta["datasets"]] == list(DATASETS)
    for dataset in meta["datasets"]:
        frame, _ = pyreadstat.read_xport(str(result.files[dataset["name"]]))
        assert [v["name"] for v in dataset["variables"]] == list(frame.columns)
        assert dataset["rows"] == len(frame)
        assert dataset["file"] == result.files[dataset["name"]].name
        for v in dataset["variables"]:
            assert v["origin"] in ("Derived", "Assigned", "Predecessor")
            assert v["derivation"], (dataset["name"], v["name"])
            assert len(v["label"]) <= 40
    adtte = meta["datasets"][1]
    cnsr = next(v for v in adtte["variables"] if v["name"] == "CNSR")
    assert cnsr["codelist"] == "CL.CNSR" and cnsr["type"] == "integer" and cnsr["length"] == 1
    aval = next(v for v in adtte["variables"] if v["name"] == "AVAL")
    assert aval["length"] == 3  # digits of the longest value (185), as Define-XML asks
    adt = next(v for v in adtte["variables"] if v["name"] == "ADT")
    assert adt["format"] == "DATE9."
    srcvar = next(v for v in adtte["variables"] if v["name"] == "SRCVAR")
    assert srcvar["length"] == len("RANDDT")  # the longest value, as ADaM asks
    srcfelm = next(v for v in adtte["variables"] if v["name"] == "SRCFELM")
    assert srcfelm["length"] == len("valueCodeableConcept")
    aval = {x["value"]: x["derivation"] for x in adtte["value_level"]}
    assert set(aval) == {"PFS", "OS", "TFST"}
    assert "missed assessments" in aval["PFS"] and "missed" not in aval["OS"]
    levels = {x["value"]: x for x in meta["datasets"][2]["value_level"]}
    assert "Platinum-free interval" in levels["IN02"]["derivation"]  # the rule's docstring


def test_derivations_say_more_than_the_label(con, tmp_path):
    """A derived variable's derivation is how it is computed, not its label again."""
    meta = json.loads(export(con, study_id=STUDY, fmt="xpt", out=tmp_path).define.read_text())
    for dataset in meta["datasets"]:
        for v in dataset["variables"]:
            where = (dataset["name"], v["name"])
            if v["origin"] == "Predecessor":
                assert v["derivation"] == f"ADSL.{v['name']}", where
            elif v["origin"] == "Derived":
                text, label = v["derivation"].rstrip(".").lower(), v["label"].lower()
                assert text != label and len(text) > len(label), where


def test_define_xml_is_valid_define_2_1_with_every_reference_resolved(con, tmp_path):
    from rescue_pipeline.analysis import define_xml

    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt", nct_id="NCT07295132")
    assert result.define_xml is not None
    define_xml.validate(result.define_xml)  # against the Define-XML 2.1 schema
    root = ElementTree.parse(result.define_xml).getroot()
    assert root.get(f"{{{DEF}}}Context") == "Submission"
    assert root.find(f".//{{{ODM}}}ProtocolName").text == "NCT07295132"
    defined = {e.get("OID") for e in root.iter() if e.get("OID")}
    defined |= {e.get("ID") for e in root.iter(f"{{{DEF}}}leaf")}
    refs = ("ItemOID", "MethodOID", "CodeListOID", "ValueListOID", "WhereClauseOID",
            "CommentOID", "leafID", "ArchiveLocationID", "StandardOID")  # fmt: skip
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.rsplit("}", 1)[-1] in refs:
                assert value in defined, f"{element.tag} {name}={value} is not defined"
    groups = {g.get("Name"): g for g in root.iter(f"{{{ODM}}}ItemGroupDef")}
    assert list(groups) == list(DATASETS)
    classes = {
        name: (g.find(f"{{{DEF}}}Class").get("Name"),
               [s.get("Name") for s in g.iter(f"{{{DEF}}}SubClass")])
        for name, g in groups.items()
    }  # fmt: skip
    assert classes["ADSL"] == ("SUBJECT LEVEL ANALYSIS DATASET", [])
    assert classes["ADTTE"] == ("BASIC DATA STRUCTURE", ["TIME-TO-EVENT"])
    for name, g in groups.items():
        assert g.get(f"{{{DEF}}}StandardOID") == "STD.ADAMIG" and g.get(f"{{{DEF}}}Structure")
        keys = sorted((int(r.get("KeySequence")), r.get("ItemOID"))
                      for r in g.iter(f"{{{ODM}}}ItemRef") if r.get("KeySequence"))  # fmt: skip
        spec = next(s for s in define.dataset_specs() if s.name == name)
        assert [oid for _, oid in keys] == [f"IT.{name}.{k}" for k in spec.keys]
        for ref in g.iter(f"{{{ODM}}}ItemRef"):  # a derived variable names its method
            item = root.find(f".//{{{ODM}}}ItemDef[@OID='{ref.get('ItemOID')}']")
            origin = item.find(f"{{{DEF}}}Origin").get("Type")
            assert (origin == "Derived") == (ref.get("MethodOID") is not None), ref.get("ItemOID")
    standards = {s.get("OID"): s for s in root.iter(f"{{{DEF}}}Standard")}
    assert (standards["STD.ADAMIG"].get("Name"), standards["STD.ADAMIG"].get("Version")) == (
        "ADaMIG",
        "1.3",
    )
    nci = {c.get("OID"): c.find(f"{{{ODM}}}Alias").get("Name")
           for c in root.iter(f"{{{ODM}}}CodeList") if c.find(f"{{{ODM}}}Alias") is not None}  # fmt: skip
    assert nci == {
        "CL.NY": "C66742", "CL.NY.YN": "C66742", "CL.NY.Y": "C66742", "CL.SEX": "C66731",
        "CL.AGEU": "C66781", "CL.RACE": "C74457", "CL.ARMNRS": "C142179", "CL.AVALU": "C71620",
    }  # fmt: skip
    sex = root.find(f".//{{{ODM}}}CodeList[@OID='CL.SEX']")
    assert {i.get("CodedValue"): i.find(f"{{{ODM}}}Alias").get("Name")
            for i in sex.iter(f"{{{ODM}}}CodeListItem")} == {
        "F": "C16576", "M": "C20197", "U": "C17998"}  # fmt: skip
    wheres = [c.text for c in root.iter(f"{{{ODM}}}CheckValue")]
    assert {"PFS", "OS", "TFST", *CRITERIA} == set(wheres)
    srcftyp = root.find(f".//{{{ODM}}}ItemDef[@OID='IT.ADTTE.SRCFTYP']")
    comment = root.find(f".//{{{DEF}}}CommentDef[@OID='{srcftyp.get(f'{{{DEF}}}CommentOID')}']")
    assert "Sponsor-defined" in "".join(comment.itertext())


def test_a_define_that_breaks_the_schema_is_refused(tmp_path):
    from rescue_pipeline.analysis import define_xml

    broken = tmp_path / "define.xml"
    broken.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" '
        'FileOID="X" FileType="Snapshot" CreationDateTime="2026-01-01T00:00:00"/>'
    )
    with pytest.raises(define_xml.DefineInvalid) as err:
        define_xml.validate(broken)
    message = str(err.value)
    assert message.startswith("define.xml is not valid Define-XML 2.1: ") and "Context" in message


def test_define_html_links_resolve_and_shows_every_variable(con, tmp_path):
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    assert result.define_html is not None
    page = _Page()
    page.feed(result.define_html.read_text())
    assert page.scripts == 0  # self-contained, nothing to run
    for href in page.hrefs:
        if href.startswith("#"):
            assert href[1:] in page.ids, f"dead anchor {href}"
        else:
            assert (result.out / href).exists(), f"dead link {href}"
    meta = json.loads(result.define.read_text())
    for dataset in meta["datasets"]:
        assert dataset["name"] in page.ids
        for v in dataset["variables"]:
            assert f"{dataset['name']}.{v['name']}" in page.ids
    text = " ".join(page.text)
    assert all(code in text for code in ("C66742", "C66731", "C66781"))  # NCI codes shown
    assert "derivation-rules" in page.ids and "rules-tte" in page.ids


def test_every_coded_value_is_in_its_codelist_on_a_cohort(tmp_path):
    """On a synthesised cohort (not the hand-made rows above): every value a coded variable
    takes is a term of its codelist."""
    from rescue_pipeline.analysis.codelists import codelist_for
    from rescue_pipeline.site_load import work_db
    from tests.cohort import build_cohort

    config, _ = build_cohort(tmp_path / "c", patients=150, seed=9)
    with work_db(config) as con:
        result = export(con, study_id=config.study_id, fmt="parquet", out=tmp_path / "out")
    checked = 0
    for spec in define.dataset_specs():
        table = pq.read_table(result.files[spec.name])
        for v in spec.variables:
            codelist = codelist_for(spec.name, v.name)
            if codelist is None:
                continue
            values = {str(x) for x in table.column(v.name).to_pylist() if x is not None}
            assert values <= codelist.values(), (spec.name, v.name, values - codelist.values())
            checked += 1
    assert checked >= 25


DEF = "http://www.cdisc.org/ns/def/v2.1"
ODM = "http://www.cdisc.org/ns/odm/v1.3"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "a" and attributes.get("href"):
            self.hrefs.append(str(attributes["href"]))
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.text.extend(data.split())


def test_value_over_200_bytes_is_an_error_naming_dataset_variable_and_row(con, tmp_path):
    con.execute(
        "UPDATE analysis.eligibility SET value = ? "
        "WHERE usubjid = 'RESCUE-A-0002' AND criterion = 'IN03'",
        ["é" * 101],
    )
    with pytest.raises(ExportError) as err:
        export(con, study_id=STUDY, fmt="csv", out=tmp_path / "csv")
    message = str(err.value)
    assert "dataset ADELIG, variable CRITVAL, row 17" in message  # subject 2's 3rd criterion
    assert "202 bytes" in message and "USUBJID=RESCUE-A-0002" in message
    assert not (tmp_path / "csv").exists()  # nothing written


def test_exactly_200_bytes_is_kept_whole(con, tmp_path):
    con.execute(
        "UPDATE analysis.adtte SET EVNTDESC = ? WHERE USUBJID = 'RESCUE-A-0001'", ["x" * 200]
    )
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    frame, _ = pyreadstat.read_xport(str(result.files["ADTTE"]))
    assert frame.EVNTDESC[0] == "x" * 200


def test_long_label_fails_loudly(monkeypatch):
    spec = define.dataset_specs()[0]
    from rescue_pipeline.analysis import exports

    bad = spec.variables[0].__class__(**{**spec.variables[0].__dict__, "label": "L" * 41})
    with pytest.raises(ExportError, match=r"dataset ADSL, variable STUDYID: label .* 41 char"):
        exports.check_metadata(spec.__class__(**{**spec.__dict__, "variables": (bad,)}))


@pytest.mark.parametrize("name", ["ADELIGEVX", "adsl", "1ADSL"])
def test_long_or_bad_names_fail_loudly(name):
    from rescue_pipeline.analysis import exports

    spec = define.dataset_specs()[0]
    with pytest.raises(ExportError, match="name must be"):
        exports.check_metadata(spec.__class__(**{**spec.__dict__, "name": name}))
    bad = spec.variables[0].__class__(**{**spec.variables[0].__dict__, "name": name})
    with pytest.raises(ExportError, match="name must be"):
        exports.check_metadata(spec.__class__(**{**spec.__dict__, "variables": (bad,)}))


@pytest.mark.parametrize("name", ["MRN", "SSN", "EMAIL"])
def test_direct_identifier_variable_is_refused(name):
    from rescue_pipeline.analysis import exports

    spec = define.dataset_specs()[0]
    bad = spec.variables[0].__class__(**{**spec.variables[0].__dict__, "name": name})
    with pytest.raises(ExportError, match="direct identifier"):
        exports.check_metadata(spec.__class__(**{**spec.__dict__, "variables": (bad,)}))


def test_labels_are_shortened_from_comments_sensibly():
    assert define.short_label("Source sequence (not used for FHIR sources).") == "Source sequence"
    assert define.short_label("Randomised arm code (A / B), null if not randomised.") == (
        "Randomised arm code (A / B)"
    )
    assert define.short_label("GCIG CA-125 response: response, no_response, not_evaluable.") == (
        "GCIG CA-125 response"
    )
    labels = {v.name: v.label for s in define.dataset_specs() for v in s.variables}
    assert labels["USUBJID"] == "Unique Subject Identifier"  # ADaMIG label in every dataset
    assert all(len(x) <= 40 for x in labels.values())
    assert set(define.CRITERION_TEXT) == set(CRITERIA)


R_READ = r"""
args <- commandArgs(trailingOnly = TRUE)
suppressPackageStartupMessages(library(haven))
frame <- read_xpt(args[1])
labels <- vapply(names(frame), function(n) {
  l <- attr(frame[[n]], "label"); if (is.null(l)) "" else l
}, "")
for (n in names(frame)) if (inherits(frame[[n]], "Date")) frame[[n]] <- format(frame[[n]])
write.csv(as.data.frame(frame), args[2], row.names = FALSE, na = "")
write.csv(data.frame(name = names(labels), label = unname(labels)), args[3], row.names = FALSE)
"""


@pytest.mark.integration  # starts R
def test_r_haven_reads_every_xpt_as_python_does(con, tmp_path):
    """What a statistician opens in R: every dataset, value for value and label for label,
    equal to what pyreadstat reads (dates as dates, missing as missing)."""
    import csv
    import shutil
    import subprocess

    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("R is not installed: sudo apt-get install r-base-core r-cran-haven")
    result = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "xpt")
    script = tmp_path / "read.R"
    script.write_text(R_READ)
    for name, path in result.files.items():
        values, labels = tmp_path / f"{name}.csv", tmp_path / f"{name}.labels.csv"
        done = subprocess.run([rscript, str(script), str(path), str(values), str(labels)],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        frame, meta = pyreadstat.read_xport(str(path))
        with labels.open() as f:
            assert {r["name"]: r["label"] for r in csv.DictReader(f)} == (
                meta.column_names_to_labels
            )
        with values.open() as f:
            from_r = list(csv.DictReader(f))
        assert len(from_r) == len(frame) == result.rows[name]
        for got, want in zip(from_r, frame.to_dict("records"), strict=True):
            for column, value in want.items():
                seen = got[column]
                if isinstance(value, dt.date):
                    assert seen == value.isoformat(), (name, column)
                elif isinstance(value, float):
                    assert (seen == "") if math.isnan(value) else float(seen) == value, column
                else:
                    assert seen == (value or ""), (name, column)


def test_race_is_exported_only_when_a_site_sends_it(con, tmp_path):
    with_race = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "with")
    frame, meta = pyreadstat.read_xport(str(with_race.files["ADSL"]))
    assert (
        frame.RACE.tolist() == ["WHITE", "", ""] and meta.column_names_to_labels["RACE"] == "Race"
    )
    assert "CL.RACE" in with_race.define_xml.read_text()
    con.execute("UPDATE analysis.adsl SET RACE = NULL")
    without = export(con, study_id=STUDY, fmt="xpt", out=tmp_path / "without")
    frame, _ = pyreadstat.read_xport(str(without.files["ADSL"]))
    assert "RACE" not in frame.columns and "SEX" in frame.columns
    assert "CL.RACE" not in without.define_xml.read_text()
    adsl = json.loads(without.define.read_text())["datasets"][0]
    assert "RACE" not in {v["name"] for v in adsl["variables"]}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_define_of_csv_and_parquet_describes_real_dates(con, tmp_path, fmt):
    from rescue_pipeline.analysis import define_xml

    result = export(con, study_id=STUDY, fmt=fmt, out=tmp_path / fmt)
    define_xml.validate(result.define_xml)
    root = ElementTree.parse(result.define_xml).getroot()
    assert root.get(f"{{{DEF}}}Context") == "Other"  # a submission is XPT
    adt = root.find(f".//{{{ODM}}}ItemDef[@OID='IT.ADTTE.ADT']")
    assert adt.get("DataType") == "date" and adt.get("DisplayFormat") is None
    assert adt.get("Length") is None
