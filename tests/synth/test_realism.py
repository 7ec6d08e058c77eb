"""Realism: counts, code systems per site flavour, dates in order, nothing after the cut-off."""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

import orjson

from rescue_pipeline.synth import DEFAULT_REFERENCE_DATE
from rescue_pipeline.synth.clinical import make_story
from rescue_pipeline.synth.story import PLATINUM
from rescue_pipeline.synth.truth import recurrence_limit, recurrences, screening_cutoff

if TYPE_CHECKING:
    from conftest import Cohort


DATE = re.compile(rb'"(\d{4}-\d{2}-\d{2})(?:T[^"]*)?"')


def _lines(cohort: Cohort, site: str, rtype: str) -> list[bytes]:
    path = cohort.path / site / f"{rtype}.ndjson"
    return path.read_bytes().splitlines() if path.exists() else []


def _clean(cohort: Cohort, site: str, rtype: str) -> list[bytes]:
    faulty = cohort.fault_lines(site, f"{rtype}.ndjson")
    return [ln for i, ln in enumerate(_lines(cohort, site, rtype), 1) if i not in faulty]


def test_resource_counts_are_plausible(cohort_1000: Cohort) -> None:
    files = cohort_1000.summary.files
    patients = sum(files[s]["Patient"] for s in files)
    assert 1000 <= patients <= 1000 * 1.1  # plus a few fault lines
    for site, counts in files.items():
        assert counts["Observation"] > 15 * counts["Patient"], site
        assert counts["MedicationAdministration"] > 10 * counts["Patient"], site
        for rtype in ("Condition", "Procedure", "Consent", "ResearchSubject"):
            assert counts[rtype] > 0, (site, rtype)
    sizes = sorted(files[s]["Patient"] for s in files)
    assert sizes[0] < sizes[-1]  # unequal site sizes
    assert "Medication" in files["site-b"] and "MedicationRequest" in files["site-b"]
    assert "MedicationStatement" in files["site-c"]


def test_code_systems_follow_each_site_flavour(cohort_1000: Cohort) -> None:
    obs = {
        s: b"\n".join(_clean(cohort_1000, s, "Observation")) for s in ("site-a", "site-b", "site-c")
    }
    cond = {
        s: b"\n".join(_clean(cohort_1000, s, "Condition")) for s in ("site-a", "site-b", "site-c")
    }
    med = {s: b"\n".join(_clean(cohort_1000, s, "MedicationAdministration")) for s in obs}
    assert b'"code":"363443007"' in cond["site-a"]
    assert b"http://terminology.hl7.org/CodeSystem/icd-o-3" in cond["site-a"]
    assert b'"code":"21976-6"' in obs["site-a"] and b"C18058" in obs["site-a"]
    assert b'"unit":"U/mL"' in obs["site-a"] and re.search(
        rb'T\d\d:\d\d:00\+0[12]:00"', obs["site-a"]
    )
    assert b"http://www.nlm.nih.gov/research/umls/rxnorm" in med["site-a"]
    assert b"http://hl7.org/fhir/sid/icd-10-cm" in cond["site-b"] and b'"C56.9"' in cond["site-b"]
    assert b'"unit":"kU/L"' in obs["site-b"] and b'"code":"RECIST-OR"' in obs["site-b"]
    assert b'"medicationReference"' in med["site-b"] and b'"boundsPeriod"' in b"\n".join(
        _clean(cohort_1000, "site-b", "MedicationRequest")
    )
    local_only = [
        ln
        for ln in _clean(cohort_1000, "site-b", "Observation")
        if b'"CA125"' in ln and b"10334-1" not in ln
    ]
    assert local_only, "site-b sends some CA-125 with only the local code"
    assert b"281900007" in obs["site-b"] and b"550991000124107" in obs["site-a"]
    assert b'"unit":"U/L"' in obs["site-c"] and b'"effectivePeriod"' in obs["site-c"]
    assert b"363679005" in obs["site-c"] and b"21976-6" not in obs["site-c"]
    assert b"CRS-2" in b"\n".join(_clean(cohort_1000, "site-c", "Procedure"))
    assert b'"Z"' not in obs["site-b"] and re.search(rb'T\d\d:\d\d:00Z"', obs["site-b"])


def test_ca125_values_are_exact_across_units(cohort_1000: Cohort) -> None:
    for line in _clean(cohort_1000, "site-c", "Observation"):
        if b'"unit":"U/L"' in line:
            value = orjson.loads(line)["valueQuantity"]["value"]
            assert isinstance(value, int) and value % 100 == 0


def test_every_story_is_in_chronological_order() -> None:
    ref = DEFAULT_REFERENCE_DATE
    for index in range(600):
        s = make_story(3, index, ref)
        first_line = min(d.day for d in s.doses if d.line == 1)
        assert s.birth < s.diagnosis <= first_line, index
        recs = recurrences(s, recurrence_limit(s, ref))
        cutoff = screening_cutoff(s, ref, recs[-1] if recs else None)
        at_recurrence = s.scenario == "sf_consent_at_recurrence"
        if recs:
            assert first_line < recs[0]
            post = [d.day for d in s.doses if d.drug in PLATINUM and recs[-1] < d.day <= cutoff]
            if post and s.consent is not None:
                if at_recurrence:  # consented at recurrence, before the first cycle
                    assert recs[-1] < s.consent < post[0] <= cutoff, index
                else:
                    assert recs[-1] < post[0] < s.consent, index
        if s.consent is not None and not at_recurrence:
            assert all(f.day < s.consent for f in s.findings), index
        if s.randomised is not None:
            assert s.consent is not None and s.consent <= s.randomised
            after = [a.day for a in s.assessments if a.after_randomisation]
            assert all(d > s.randomised for d in after)
        everything = [d.day for d in s.doses] + [lab.day for lab in s.labs]
        everything += [a.day for a in s.assessments] + [x.day for x in s.statuses]
        everything += [x.day for x in s.surgeries] + [x.start for x in s.oral]
        if s.death is not None:
            everything.append(s.death)
            assert all(d <= s.death for d in everything), index
        assert max(everything) < ref, index


def test_nothing_is_dated_after_the_reference_date_except_future_faults(
    cohort_1000: Cohort,
) -> None:
    ref = cohort_1000.truth["generator"]["reference_date"].encode()
    future = 0
    for site in cohort_1000.summary.sites:
        for path in (cohort_1000.path / site).glob("*.ndjson"):
            faults = cohort_1000.fault_lines(site, path.name)
            for number, line in enumerate(path.read_bytes().splitlines(), 1):
                late = [d for d in DATE.findall(line) if d > ref]
                if late:
                    assert faults.get(number, {}).get("kind") == "future_date", (path, number)
                    future += 1
    assert future == cohort_1000.summary.faults["future_date"]


def test_demo_sized_cohort_shows_every_screen_failure_and_fault(cohort_demo: Cohort) -> None:
    scenarios = {s["scenario"].split("/")[0] for s in cohort_demo.truth["subjects"]}
    from rescue_pipeline.synth.scenarios import RANDOMISED_SPECIAL, SCREEN_FAILURES

    assert set(SCREEN_FAILURES) | set(RANDOMISED_SPECIAL) <= scenarios
    assert set(cohort_demo.summary.faults) >= {
        "not_json",
        "invalid_utf8",
        "duplicate",
        "updated_version",
        "entered_in_error",
    }


def test_dates_are_real_calendar_dates(cohort_demo: Cohort) -> None:
    for site in cohort_demo.summary.sites:
        faults = cohort_demo.fault_lines(site, "Observation.ndjson")
        lines = (cohort_demo.path / site / "Observation.ndjson").read_bytes().splitlines()
        for number, line in enumerate(lines, 1):
            if faults.get(number, {}).get("kind") == "invalid_date":
                continue
            for d in DATE.findall(line):
                date.fromisoformat(d.decode())


ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
PRIMARY_PROFILE = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition"
PRODUCT_CODES = {"597195", "583214", "1719003"}


def test_each_coding_class_real_sites_send_reaches_two_percent_of_subjects(
    cohort_1000: Cohort,
) -> None:
    """Rule book §1: ICD-10-CM header and child codes, SNOMED CT-only primaries, non-qualifying
    standard primaries, contained Medications and product-level RxNorm codes, each in >= 2 %."""
    subjects = {(s["site_id"], s["patient_id"]) for s in cohort_1000.truth["subjects"]}
    seen: dict[str, set[tuple[str, str]]] = {}

    def mark(kind: str, site: str, resource: dict) -> None:
        patient = resource["subject"]["reference"].removeprefix("Patient/")
        if (site, patient) in subjects:
            seen.setdefault(kind, set()).add((site, patient))

    for site in cohort_1000.summary.sites:
        for line in _clean(cohort_1000, site, "Condition"):
            c = orjson.loads(line)
            if PRIMARY_PROFILE not in c.get("meta", {}).get("profile", []):
                continue
            [coding] = c["code"]["coding"]
            code = coding["code"]
            if code.startswith("C57.4"):
                mark("non-qualifying primary", site, c)
            elif coding["system"] == ICD10CM and code in ("C56", "C57.0", "C48.1"):
                mark("ICD-10-CM header", site, c)
            elif coding["system"] == ICD10CM and code not in ("C56.9", "C57.00", "C48.2"):
                mark("ICD-10-CM child", site, c)
            elif coding["system"] == SNOMED:
                mark("SNOMED CT only", site, c)
        products = {
            f"Medication/{m['id']}"
            for m in map(orjson.loads, _clean(cohort_1000, site, "Medication"))
            if any(x["code"] in PRODUCT_CODES for x in m["code"]["coding"])
        }
        for rtype in ("MedicationAdministration", "MedicationRequest", "MedicationStatement"):
            for line in _clean(cohort_1000, site, rtype):
                m = orjson.loads(line)
                if "contained" in m:
                    mark("contained Medication", site, m)
                concepts = [m.get("medicationCodeableConcept")]
                concepts += [c.get("code") for c in m.get("contained", [])]
                codes = {x["code"] for cc in concepts if cc for x in cc["coding"]}
                reference = m.get("medicationReference", {}).get("reference")
                if codes & PRODUCT_CODES or reference in products:
                    mark("product-level RxNorm", site, m)
    shares = {
        kind: len(seen.get(kind, ())) / len(subjects)
        for kind in (
            "ICD-10-CM header",
            "ICD-10-CM child",
            "SNOMED CT only",
            "non-qualifying primary",
            "contained Medication",
            "product-level RxNorm",
        )
    }
    assert all(share >= 0.02 for share in shares.values()), shares
