"""Render a Story as the FHIR R4 resources one site flavour would send (mCODE-shaped).

Only presentation varies between flavours (codes, units, times, packaging); the clinical facts
are the story's. Each resource is yielded with a `role` that tells `faults.py` which faults fit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from rescue_pipeline.synth import flavours as fl
from rescue_pipeline.synth.codes import (
    ARMS,
    BODY_SITES,
    DRUG_PRODUCTS,
    DRUGS,
    EVIDENCE_EXT,
    FIGO,
    HISTOLOGY_EXT,
    HISTOLOGY_NAMES,
    MCODE,
    NAMES,
    NCIT_RESPONSE,
    PRIMARY_CHILD_ICD10CM,
    PRIMARY_CODES,
    PRIMARY_HEADER_ICD10CM,
    PRIMARY_SNOMED,
    RESPONSE_TO_STATUS,
    STATUS_CODES,
    STREETS,
)
from rescue_pipeline.synth.ids import STUDY_ID, SUBJECT_ID_SYSTEM, medication_id, mrn, resource_id
from rescue_pipeline.synth.story import Story

LATE_OLDER_VERSION = "late_older_version"
"""Role of an older version written after the current one (the cohort records it as such)."""
DELETED_AT_SITE = "deleted_at_site"
"""Role of a resource the site sent in error and deleted (a Bulk `deleted` entry follows)."""


@dataclass(frozen=True, slots=True)
class Emitted:
    """One resource ready to write, with the role that decides which faults fit it."""

    resource_type: str
    resource: dict[str, Any]
    role: str  # patient | ca125 | ca125_post | assessment_post | observation | other
    day: date | None = None


@dataclass(frozen=True)
class Rendered:
    """All resources of one patient at one site, and the ids the ground truth refers to."""

    resources: list[Emitted]
    patient_id: str
    research_subject_id: str | None
    subject_identifier: str | None
    medications: tuple[str, ...]  # Medication resources referenced: "drug" or "drug:product"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display is not None:
        out["display"] = display
    return out


def _cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


class _Renderer:
    """Turns one story into resources for one site; keeps the per-patient id counter."""

    def __init__(self, story: Story, site: fl.Site, seed: int, ref: date) -> None:
        self.story = story
        self.site = site
        self.flavour = site.flavour
        self.seed = seed
        self.ref = ref
        self.rng = random.Random(f"rescue-synth:{seed}:{story.index}:fhir")
        # How this subject's records are coded: a stream of its own, so that varying the codes
        # never moves a date or a value drawn from self.rng.
        codes = random.Random(f"rescue-synth:{seed}:{story.index}:codes")
        self.primary_coding = _primary_coding(codes, site.flavour, story.primary_site)
        self.contained = codes.random() < CONTAINED_SHARE
        self.product = codes.random() < PRODUCT_SHARE
        self.counter = 0
        self.out: list[Emitted] = []
        self.medications: list[str] = []
        self.patient_id = self.new_id()
        self.patient_ref = {"reference": f"Patient/{self.patient_id}"}

    def new_id(self) -> str:
        self.counter += 1
        return resource_id(self.seed, self.story.index, self.counter)

    def when(self, day: date) -> str:
        return fl.local_datetime(self.flavour, day, self.rng.randint(8 * 60, 16 * 60 + 59))

    def meta(self, day: date, profile: str | None = None) -> dict[str, Any]:
        last = min(day + timedelta(days=self.rng.randint(1, 3)), self.ref - timedelta(days=1))
        ms = self.rng.randint(0, 86_399_999)
        sec, ms = divmod(ms, 1000)
        hh, rem = divmod(sec, 3600)
        stamp = f"{last.isoformat()}T{hh:02d}:{rem // 60:02d}:{rem % 60:02d}.{ms:03d}Z"
        meta: dict[str, Any] = {"versionId": "1", "lastUpdated": stamp}
        if profile is not None:
            meta["profile"] = [f"{MCODE}/{profile}"]
        return meta

    def emit(
        self,
        rtype: str,
        body: dict[str, Any],
        day: date,
        role: str = "other",
        profile: str | None = None,
    ) -> str:
        rid = self.new_id()
        resource = {"resourceType": rtype, "id": rid, "meta": self.meta(day, profile), **body}
        self.out.append(Emitted(rtype, resource, role, day))
        return rid

    def effective(self, day: date, allow_period: bool = True) -> dict[str, Any]:
        stamp = self.when(day)
        if allow_period and self.flavour == "c" and self.rng.random() < 0.25:
            return {"effectivePeriod": {"start": stamp, "end": stamp}}
        return {"effectiveDateTime": stamp}

    def observation(
        self,
        code: dict[str, Any],
        day: date,
        value: dict[str, Any],
        role: str = "observation",
        profile: str | None = None,
        extra: dict[str, Any] | None = None,
        category: str = "exam",
    ) -> str:
        body: dict[str, Any] = {
            "status": "final",
            "category": [
                _cc("http://terminology.hl7.org/CodeSystem/observation-category", category)
            ],
            "code": code,
            "subject": self.patient_ref,
            **self.effective(day),
            **value,
        }
        if extra:
            body.update(extra)
        return self.emit("Observation", body, day, role, profile)

    def medication(self, drug: str) -> dict[str, Any]:
        product = self.product and drug in DRUG_PRODUCTS
        rxnorm, display = DRUG_PRODUCTS[drug] if product else DRUGS[drug][:2]
        if self.contained:
            # a contained Medication, a local pharmacy code before the RxNorm one
            local = _coding(f"{self.site.local}/pharmacy", f"PH-{rxnorm}", display.upper())
            medication = {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [local, _coding(fl.RXNORM, rxnorm, display)]},
            }
            return {"contained": [medication], "medicationReference": {"reference": "#med"}}
        if self.flavour == "b":
            key = f"{drug}:product" if product else drug
            if key not in self.medications:
                self.medications.append(key)
            mid = medication_id(self.seed, self.site.id, key)
            return {"medicationReference": {"reference": f"Medication/{mid}", "display": display}}
        return {"medicationCodeableConcept": _cc(fl.RXNORM, rxnorm, display)}


CONTAINED_SHARE = 0.05  # subjects whose drugs come as contained Medications
PRODUCT_SHARE = 0.06  # subjects whose carboplatin, paclitaxel, gemcitabine are SCD codes


def _primary_coding(rng: random.Random, flavour: str, site: str) -> tuple[str, str, str]:
    """(system, code, display) of the primary: the flavour's usual code, or another a real site
    sends for the same site (an ICD-10-CM header or child code, some dotless, or SNOMED CT)."""
    usual = PRIMARY_CODES[flavour][site]
    draw = rng.random()
    if site not in PRIMARY_HEADER_ICD10CM:
        return usual
    if draw < 0.05:
        return (fl.ICD10CM, *PRIMARY_HEADER_ICD10CM[site])
    if draw < 0.10:
        code, display = rng.choice(PRIMARY_CHILD_ICD10CM[site])
        return (fl.ICD10CM, code.replace(".", "") if rng.random() < 0.5 else code, display)
    if draw < 0.15 and site in PRIMARY_SNOMED:
        return (fl.SNOMED, *PRIMARY_SNOMED[site])
    return usual


def medication_resource(seed: int, site: fl.Site, key: str, ref: date) -> dict[str, Any]:
    """A site's shared Medication resource (flavour b references these); `key` is the drug, or
    "<drug>:product" for its product-level (SCD) Medication."""
    drug, _, form = key.partition(":")
    rxnorm, display = DRUG_PRODUCTS[drug] if form else DRUGS[drug][:2]
    stamp = f"{(ref - timedelta(days=1200)).isoformat()}T06:00:00.000Z"
    return {
        "resourceType": "Medication",
        "id": medication_id(seed, site.id, key),
        "meta": {"versionId": "1", "lastUpdated": stamp},
        "code": _cc(fl.RXNORM, rxnorm, display),
        "status": "active",
    }


def render(
    story: Story, site: fl.Site, seed: int, ref: date, subject_number: int | None
) -> Rendered:
    """All resources of `story` as `site` would send them."""
    r = _Renderer(story, site, seed, ref)
    _patient(r)
    primary = _conditions(r)
    _observations(r, primary)
    _medications(r)
    rs_id, identifier = _trial(r, subject_number)
    return Rendered(r.out, r.patient_id, rs_id, identifier, tuple(r.medications))


US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
OMB_RACE = (
    ("2106-3", "White"), ("2054-5", "Black or African American"), ("2028-9", "Asian"),
    ("1002-5", "American Indian or Alaska Native"),
    ("2076-8", "Native Hawaiian or Other Pacific Islander"),
)  # fmt: skip


def _race(r: _Renderer) -> dict[str, Any] | None:
    """Site a's EHR sends the US Core race extension (OMB categories, now and then two, or
    'asked but unknown'); the other sites send no race. A stream of its own: nothing else
    moves."""
    if r.flavour != "a":
        return None
    rng = random.Random(f"rescue-synth:{r.seed}:{r.story.index}:race")
    draw = rng.random()
    if draw < 0.1:
        return None  # not recorded
    parts: list[dict[str, Any]] = []
    if draw < 0.15:
        coding = {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                  "code": "ASKU", "display": "Asked but no answer"}  # fmt: skip
        parts.append({"url": "ombCategory", "valueCoding": coding})
        text = "Asked but no answer"
    else:
        chosen = rng.sample(OMB_RACE, 2 if draw > 0.95 else 1)
        for code, display in chosen:
            coding = {"system": "urn:oid:2.16.840.1.113883.6.238", "code": code,
                      "display": display}  # fmt: skip
            parts.append({"url": "ombCategory", "valueCoding": coding})
        text = ", ".join(display for _, display in chosen)
    parts.append({"url": "text", "valueString": text})
    return {"url": US_CORE_RACE, "extension": parts}


def _patient(r: _Renderer) -> None:
    s, rng = r.story, r.rng
    families, givens, cities = NAMES[r.flavour]
    body: dict[str, Any] = {
        "identifier": [
            {
                "type": _cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
                "system": f"https://{r.site.id}.example.org/fhir/mrn",
                "value": mrn(r.site.code, s.index),
            }
        ],
        "name": [
            {"use": "official", "family": rng.choice(families), "given": [rng.choice(givens)]}
        ],
        "gender": "female",
        "birthDate": s.birth.isoformat()[: {"day": 10, "month": 7, "year": 4}[s.birth_precision]],
        "address": [
            {
                "use": "home",
                "line": [f"{rng.randint(1, 240)} {rng.choice(STREETS)} Street"],
                "city": rng.choice(cities),
                "postalCode": f"{rng.randint(10000, 99999)}",
            }
        ],
    }
    if s.death is not None:
        body["deceasedDateTime"] = r.when(s.death)
    race = _race(r)
    if race:
        body["extension"] = [race]
    resource = {
        "resourceType": "Patient",
        "id": r.patient_id,
        "meta": r.meta(s.death or s.last_contact),
        **body,
    }
    r.out.append(Emitted("Patient", resource, "patient", s.death or s.last_contact))


def _conditions(r: _Renderer) -> str:
    s = r.story
    system, code, display = r.primary_coding
    onset = (
        {"recordedDate": r.when(s.diagnosis)}
        if r.flavour == "b"
        else {"onsetDateTime": r.when(s.diagnosis)}
    )
    primary = r.emit(
        "Condition",
        {
            "extension": [
                {
                    "url": HISTOLOGY_EXT,
                    "valueCodeableConcept": _cc(
                        fl.ICDO3, s.histology, HISTOLOGY_NAMES[s.histology]
                    ),
                }
            ],
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active"
            ),
            "verificationStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
            ),
            "category": [
                _cc("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")
            ],
            "code": _cc(system, code, display),
            "subject": r.patient_ref,
            **onset,
        },
        s.diagnosis,
        profile="mcode-primary-cancer-condition",
    )
    secondaries: list[tuple[date, str]] = [(day, "peritoneum") for day in s.recurrence_conditions]
    if s.metastasis_at_diagnosis is not None:
        secondaries.insert(0, (s.diagnosis, s.metastasis_at_diagnosis))
    for day, where in secondaries:
        code_cc = (
            _cc(f"{r.site.local}/diagnosis", "REZIDIV", "Rezidiv / Metastase")
            if r.flavour == "b"
            else _cc(fl.SNOMED, "128462008", "Secondary malignant neoplastic disease")
        )
        r.emit(
            "Condition",
            {
                "clinicalStatus": _cc(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical", "active"
                ),
                "category": [
                    _cc(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "problem-list-item",
                    )
                ],
                "code": code_cc,
                "bodySite": [_cc(fl.SNOMED, *BODY_SITES[where])],
                "subject": r.patient_ref,
                # sent dated to the month when the site recorded no more
                "onsetDateTime": day.isoformat()[:7] if day == s.partial_onset else r.when(day),
            },
            day,
            profile="mcode-secondary-cancer-condition",
        )
    return primary


def _ca125(r: _Renderer, day: date, tenths: int, below: bool, post: bool) -> None:
    unit, factor = fl.CA125_UNITS[r.flavour]
    loinc = _coding(fl.LOINC, "10334-1", "Cancer Ag 125 [Units/volume] in Serum or Plasma")
    if r.flavour == "b":
        local = _coding(f"{r.site.local}/lab", "CA125", "CA 125")
        code = {"coding": [local] if r.rng.random() < 0.3 else [local, loinc], "text": "CA-125"}
    else:
        code = {"coding": [loinc], "text": "CA-125"}
    number: int | float = tenths * factor // 10 if factor == 1000 else tenths / 10
    quantity: dict[str, Any] = {"value": number, "unit": unit, "system": fl.UCUM, "code": unit}
    if below:
        quantity = {
            "value": 5 * factor,
            "comparator": "<",
            "unit": unit,
            "system": fl.UCUM,
            "code": unit,
        }
    r.observation(
        code,
        day,
        {"valueQuantity": quantity},
        role="ca125_post" if post else "ca125",
        category="laboratory",
    )


def _disease_status(
    r: _Renderer, day: date, value: str, primary: str, imaging: bool, role: str = "observation"
) -> None:
    stu = "stu3" if r.flavour == "b" else "stu4"
    code, display = STATUS_CODES[stu][value]
    extra: dict[str, Any] = {"focus": [{"reference": f"Condition/{primary}"}]}
    if imaging:
        extra["extension"] = [
            {"url": EVIDENCE_EXT, "valueCodeableConcept": _cc(fl.SNOMED, "363679005", "Imaging")}
        ]
    r.observation(
        _cc(fl.LOINC, "97509-4", "Cancer disease progression"),
        day,
        {"valueCodeableConcept": _cc(fl.SNOMED, code, display)},
        role=role,
        profile="mcode-cancer-disease-status",
        extra=extra,
    )


def _assessment(r: _Renderer, day: date, response: str, primary: str, post: bool) -> None:
    role = "assessment_post" if post else "observation"
    if r.flavour == "c":
        _disease_status(r, day, RESPONSE_TO_STATUS[response], primary, True, role)
        return
    if r.flavour == "b":
        code = _cc(f"{r.site.local}/imaging", "RECIST-OR", "Gesamtansprechen RECIST")
        value: dict[str, Any] = {"text": response}
    else:
        code = _cc(fl.LOINC, "21976-6", "Response to treatment RECIST")
        value = (
            {"coding": [_coding(fl.NCIT, *NCIT_RESPONSE[response])], "text": response}
            if response in NCIT_RESPONSE
            else {"text": response}
        )
    r.observation(
        code,
        day,
        {"valueCodeableConcept": value},
        role=role,
        extra={"method": {"text": "RECIST 1.1"}},
        category="imaging",
    )


def _month_only(resource: dict[str, Any], day: date) -> None:
    """Send the resource's date as YYYY-MM, as sites do when only the month is recorded."""
    resource.pop("effectivePeriod", None)
    resource["effectiveDateTime"] = day.isoformat()[:7]


def deletion_bundle(resource_type: str, resource_id: str, meta: dict[str, Any]) -> bytes:
    """One line of a Bulk `deleted` file: a Bundle deleting the resource two days after its
    last update (the deletion must be at or after the version it removes)."""
    stamp = str(meta["lastUpdated"])
    when = (date.fromisoformat(stamp[:10]) + timedelta(days=2)).isoformat() + stamp[10:]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": when,
        "entry": [{"request": {"method": "DELETE", "url": f"{resource_type}/{resource_id}"}}],
    }
    return orjson.dumps(bundle)


def _corrected_assessment(r: _Renderer, day: date, response: str, primary: str) -> None:
    """A deciding response sent twice: version 2 (`amended`, the story's response) first, then
    version 1 with another response and an earlier lastUpdated, arriving late. The older
    version must never replace the newer one (rule book §1, current version)."""
    _assessment(r, day, "PD" if response != "PD" else "SD", primary, False)
    first = r.out.pop()
    _assessment(r, day, response, primary, False)
    second = r.out[-1].resource
    old = first.resource
    old["id"] = second["id"]
    stamp = second["meta"]["lastUpdated"]
    earlier = date.fromisoformat(stamp[:10]) - timedelta(days=r.rng.randint(2, 6))
    old["meta"] = {
        **second["meta"],
        "versionId": "1",
        "lastUpdated": earlier.isoformat() + stamp[10:],
    }
    second["meta"]["versionId"] = "2"
    second["status"] = "amended"
    r.out.append(Emitted(first.resource_type, old, LATE_OLDER_VERSION, first.day))


def _observations(r: _Renderer, primary: str) -> None:
    s = r.story
    r.observation(
        _cc(fl.LOINC, "21908-9", "Stage group.clinical Cancer"),
        s.diagnosis,
        {"valueCodeableConcept": _cc(fl.NCIT, FIGO[s.stage], f"FIGO Stage {s.stage}")},
        profile="mcode-cancer-stage",
        extra={
            "method": _cc(fl.SNOMED, "254386003", "FIGO ovarian tumor staging"),
            "focus": [{"reference": f"Condition/{primary}"}],
        },
    )
    for lab in s.labs:
        _ca125(r, lab.day, lab.tenths, lab.below_lod, lab.after_randomisation)
    for status in s.statuses:
        _disease_status(r, status.day, status.value, primary, r.flavour == "c")
    screening = [a for a in s.assessments if not a.after_randomisation]
    for a in s.assessments:
        if s.corrected_assessment and a is screening[-1]:
            _corrected_assessment(r, a.day, a.response, primary)
        else:
            _assessment(r, a.day, a.response, primary, a.after_randomisation)
            if s.partial_assessment and a is screening[-1]:
                _month_only(r.out[-1].resource, a.day)
    if s.deleted_record and s.randomised is not None:
        # a progression recorded on the wrong patient, sent and then deleted at the site: used,
        # it would be a PFS event three weeks after randomisation
        _assessment(r, s.randomised + timedelta(days=21), "PD", primary, True)
        wrong = r.out.pop()
        r.out.append(Emitted(wrong.resource_type, wrong.resource, DELETED_AT_SITE, wrong.day))
    for surgery in s.surgeries:
        kind = surgery.kind
        if r.flavour == "c":
            code = _cc(
                f"{r.site.local}/procedure", fl.LOCAL_PROCEDURE_CODES[kind], f"{kind} cytoreduction"
            )
        else:
            code = _cc(
                fl.RESCUE,
                f"{kind}-cytoreductive-surgery",
                f"{kind.capitalize()} cytoreductive surgery",
            )
        proc = r.emit(
            "Procedure",
            {
                "status": "completed",
                "code": code,
                "subject": r.patient_ref,
                "performedDateTime": r.when(surgery.day),
            },
            surgery.day,
            profile="mcode-cancer-related-surgical-procedure",
        )
        r.observation(
            _cc(fl.RESCUE, "residual-disease", "Residual disease"),
            surgery.day,
            {"valueCodeableConcept": _cc(fl.RESCUE, surgery.residual)},
            extra={"partOf": [{"reference": f"Procedure/{proc}"}]},
        )
    for f in s.findings:
        value = (
            {"valueBoolean": f.value}
            if isinstance(f.value, bool)
            else {"valueCodeableConcept": _cc(fl.RESCUE, f.value)}
        )
        r.observation(_cc(fl.RESCUE, f.kind), f.day, value)


def _medications(r: _Renderer) -> None:
    s, rng = r.story, r.rng
    for dose in s.doses:
        low, high = DRUGS[dose.drug][2]
        stamp = r.when(dose.day)
        effective: dict[str, Any] = {"effectiveDateTime": stamp}
        if r.flavour == "c" and rng.random() < 0.3:
            effective = {"effectivePeriod": {"start": stamp, "end": stamp}}
        r.emit(
            "MedicationAdministration",
            {
                "status": "completed",
                **r.medication(dose.drug),
                "subject": r.patient_ref,
                **effective,
                "dosage": {
                    "route": _cc(fl.SNOMED, "47625008", "Intravenous route"),
                    "dose": {
                        "value": rng.randint(low, high),
                        "unit": "mg",
                        "system": fl.UCUM,
                        "code": "mg",
                    },
                },
            },
            dose.day,
        )
    for course in s.oral:
        period: dict[str, str] = {"start": course.start.isoformat()}
        if course.end is not None:
            period["end"] = course.end.isoformat()
        status = "completed" if course.end is not None else "active"
        last = course.end or course.start
        if r.flavour == "b":
            r.emit(
                "MedicationRequest",
                {
                    "status": status,
                    "intent": "order",
                    **r.medication(course.drug),
                    "subject": r.patient_ref,
                    "authoredOn": r.when(course.start),
                    "dosageInstruction": [
                        {"text": "orally, daily", "timing": {"repeat": {"boundsPeriod": period}}}
                    ],
                },
                last,
            )
        else:
            r.emit(
                "MedicationStatement",
                {
                    "status": status,
                    **r.medication(course.drug),
                    "subject": r.patient_ref,
                    "effectivePeriod": period,
                    "dateAsserted": r.when(course.start),
                },
                last,
            )


def _trial(r: _Renderer, subject_number: int | None) -> tuple[str | None, str | None]:
    s = r.story
    if not s.trial_subject or s.consent is None:
        return None, None
    consent_id: str | None = None
    actions = ["collect", "use", "disclose"] if s.consent_disclose else ["collect", "use"]
    if s.consent_sent:
        consent_id = r.emit(
            "Consent",
            {
                "status": "active",
                "scope": _cc("http://terminology.hl7.org/CodeSystem/consentscope", "research"),
                "category": [_cc(fl.LOINC, "59284-0", "Consent Document")],
                "patient": r.patient_ref,
                "dateTime": r.when(s.consent),
                "policyRule": _cc("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
                "provision": {
                    "type": "permit",
                    "period": {"start": s.consent.isoformat()},
                    "action": [
                        _cc("http://terminology.hl7.org/CodeSystem/consentaction", a)
                        for a in actions
                    ],
                },
            },
            s.consent,
        )
    identifier = None
    body: dict[str, Any] = {}
    if subject_number is not None:
        identifier = f"RSC-{r.site.code}-{subject_number:04d}"
        body["identifier"] = [{"system": SUBJECT_ID_SYSTEM, "value": identifier}]
    body["status"] = s.subject_status
    if s.randomised is not None and s.arm is not None:
        body["period"] = {"start": s.randomised.isoformat()}
        if s.study_end is not None:
            body["period"]["end"] = s.study_end.isoformat()
    elif s.screening_end is not None:
        body["period"] = {"start": s.consent.isoformat(), "end": s.screening_end.isoformat()}
    body["study"] = {
        "identifier": {"system": "https://clinicaltrials.gov", "value": STUDY_ID},
        "display": "RESCUE",
    }
    body["individual"] = r.patient_ref
    if s.arm is not None:
        body["assignedArm"] = ARMS[s.arm]
        body["actualArm"] = ARMS[s.arm]
    if consent_id is not None:
        body["consent"] = {"reference": f"Consent/{consent_id}"}
    rs_id = r.emit("ResearchSubject", body, s.last_contact)
    return rs_id, identifier
