"""Ground truth for one subject: issue 5's rules applied to the story's own records.

These are deliberately small re-statements of the rules (PFI, cycles, GCIG CA-125 response,
eligibility IN01..EX08, PFS rules 1-5), written independently of the pipeline so that a
subject-by-subject comparison checks the pipeline rather than repeats it. Readings chosen where
issue 5 leaves room (the pipeline must agree, and the stories keep margins around them):

- Eligibility looks only at records dated on or before the randomisation date (the consent date
  for subjects never randomised). The screened recurrence is the latest recurrence in that span.
- A recurrence is a worsening (disease status worsened, imaging PD, or SecondaryCancerCondition
  onset) after the end of the first line's chemotherapy that follows a documented time without
  disease (NED / CR, or CA-125 < 35 U/mL) since the previous recurrence.
- IN01 = invasive epithelial ovarian/tubal/peritoneal cancer whose screened recurrence is the
  first; platinum sensitivity is judged by IN02 and EX05 alone. A primary of another site
  (recorded with a standard code, rule book §6) fails IN01 whatever its recurrences.
- GCIG: pre-treatment value = latest value in the 14 days before the first platinum dose after
  the screened recurrence; values below the detection limit count as the limit (5 U/mL).
- IN03 uses the last tumour assessment after that first cycle.
- PFS: "last adequate assessment before" an event or therapy means strictly before its date.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from rescue_pipeline.synth.story import PLATINUM, Story

ULN_TENTHS = 350
PFI_SIX_MONTHS = 183
INTERVAL = 84
WINDOW = 14
RULE3_DAYS = 2 * INTERVAL + WINDOW
PFS_WINDOW_DAYS = 730
CRITERIA = (
    "IN01",
    "IN02",
    "IN03",
    "IN04",
    "IN05",
    "IN06",
    "EX01",
    "EX02",
    "EX03",
    "EX04",
    "EX05",
    "EX06",
    "EX07",
    "EX08",
)
IN01_SITES = ("ovary", "tube", "peritoneum")
NON_EPITHELIAL_PREFIXES = ("86", "87", "88", "89", "90", "91", "92", "93", "94", "95", "96")


def screening_cutoff(story: Story, ref: date) -> date:
    """Last date whose records count for eligibility."""
    return story.randomised or story.consent or ref


def recurrences(story: Story, cutoff: date) -> list[date]:
    """Recurrence dates up to `cutoff`, by the reading in the module docstring."""
    first_line_end = max(d.day for d in story.doses if d.line == 1 and d.phase == "chemo")
    events: list[tuple[date, int]] = []  # 0 = time without disease, 1 = worsening
    events += [(s.day, 0 if s.value == "ned" else 1) for s in story.statuses]
    events += [(day, 1) for day in story.recurrence_conditions]
    events += [(lab.day, 0) for lab in story.labs if lab.below_lod or lab.tenths < ULN_TENTHS]
    events += [
        (a.day, 0 if a.response == "CR" else 1)
        for a in story.assessments
        if a.response in ("CR", "PD")
    ]
    found: list[date] = []
    disease_free = False
    for day, kind in sorted(events):
        if day <= first_line_end or day > cutoff:
            continue
        if kind == 0:
            disease_free = True
        elif disease_free:
            found.append(day)
            disease_free = False
    return found


def count_cycles(days: list[date]) -> int:
    """Cycles: a platinum dose starts a new cycle when >= 14 days after the previous start."""
    count, start = 0, None
    for day in sorted(days):
        if start is None or (day - start).days >= 14:
            count, start = count + 1, day
    return count


def gcig_response(story: Story, first_cycle: date | None, cutoff: date) -> tuple[str, date | None]:
    """GCIG CA-125 response (Rustin 2011) with ULN 35 U/mL, values up to `cutoff`."""
    if first_cycle is None:
        return "not_evaluable", None
    labs = [
        (lab.day, 50 if lab.below_lod else lab.tenths)
        for lab in story.labs
        if not lab.after_randomisation and lab.day <= cutoff
    ]
    pre = [v for d, v in labs if first_cycle - timedelta(days=14) <= d < first_cycle]
    if not pre or pre[-1] < 2 * ULN_TENTHS:
        return "not_evaluable", None
    line = pre[-1] / 2
    after = [(d, v) for d, v in labs if d > first_cycle]
    for i, (day, value) in enumerate(after):
        if value > line:
            continue
        for later_day, later_value in after[i + 1 :]:
            if later_value > line:
                break
            if (later_day - day).days >= 28:
                return "response", day
    return "no_response", None


def _status(met: bool) -> str:
    return "met" if met else "not_met"


def eligibility(story: Story, ref: date) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Each criterion's status and reason, plus the screening facts they were decided on."""
    cutoff = screening_cutoff(story, ref)
    recs = recurrences(story, cutoff)
    rec = recs[-1] if recs else None
    platinum = [d.day for d in story.doses if d.drug in PLATINUM and d.day <= cutoff]
    before = [day for day in platinum if rec is not None and day < rec]
    pfi = (rec - before[-1]).days if rec is not None and before else None
    post = [day for day in platinum if rec is not None and day > rec]
    cycles = count_cycles(post) if post else None
    response, response_day = gcig_response(story, post[0] if post else None, cutoff)
    after_c1 = [a for a in story.assessments if post and post[0] < a.day <= cutoff]
    recist = after_c1[-1].response if after_c1 else None
    findings = {f.kind: f.value for f in story.findings if f.day <= cutoff}
    has_status = bool(story.statuses) or bool(story.assessments)
    morphology, behaviour = story.histology.split("/")
    non_epithelial = morphology.startswith(NON_EPITHELIAL_PREFIXES)
    borderline = behaviour == "1"
    c: dict[str, dict[str, str]] = {}

    if non_epithelial or borderline:
        c["IN01"] = {
            "status": "not_met",
            "reason": f"histology {story.histology} is not invasive epithelial",
        }
    elif story.primary_site not in IN01_SITES:
        c["IN01"] = {
            "status": "not_met",
            "reason": f"primary site {story.primary_site} is not ovary, tube or peritoneum",
        }
    elif rec is None:
        c["IN01"] = (
            {"status": "not_met", "reason": "disease-status records show no recurrence"}
            if has_status
            else {"status": "unknown", "reason": "no disease-status data"}
        )
    elif len(recs) > 1:
        c["IN01"] = {"status": "not_met", "reason": f"screened recurrence is number {len(recs)}"}
    else:
        c["IN01"] = {
            "status": "met",
            "reason": f"first recurrence on {rec} of {story.histology} {story.primary_site} cancer",
        }
    c["IN02"] = (
        {"status": "unknown", "reason": "no recurrence or no platinum before it"}
        if pfi is None
        else {"status": _status(pfi >= PFI_SIX_MONTHS), "reason": f"PFI {pfi} days"}
    )
    if recist in ("CR", "PR", "SD"):
        c["IN03"] = {"status": "met", "reason": f"RECIST {recist} after {cycles} cycles"}
    elif recist == "PD":
        c["IN03"] = {"status": "not_met", "reason": f"RECIST PD after {cycles} cycles"}
    elif response == "response":
        c["IN03"] = {
            "status": "met",
            "reason": f"RECIST {recist or 'absent'}; GCIG CA-125 response on {response_day}",
        }
    elif recist is None and response == "no_response":
        c["IN03"] = {"status": "not_met", "reason": "no RECIST; GCIG CA-125 no response"}
    else:
        c["IN03"] = {
            "status": "unknown",
            "reason": f"RECIST {recist or 'absent'}; CA-125 {response.replace('_', ' ')}",
        }
    age = _age(story.birth, story.consent) if story.consent else None
    c["IN04"] = (
        {"status": "unknown", "reason": "no consent date"}
        if age is None
        else {"status": _status(age >= 19), "reason": f"age {age} at consent"}
    )
    resect = findings.get("resectability")
    c["IN05"] = (
        {"status": "unknown", "reason": "no resectability record"}
        if resect is None
        else {
            "status": _status(resect == "complete-resection-feasible"),
            "reason": f"surgeon: {resect}",
        }
    )
    c["IN06"] = (
        {"status": "unknown", "reason": "no consent"}
        if story.consent is None
        else {
            "status": _status(story.consent_disclose),
            "reason": "consent permits disclose"
            if story.consent_disclose
            else "consent without disclose (data transfer)",
        }
    )
    if rec is not None:
        c["EX01"] = {"status": "not_met", "reason": f"recurrence on {rec}"}
    elif has_status:
        c["EX01"] = {"status": "met", "reason": "disease-status records show no recurrence"}
    else:
        c["EX01"] = {"status": "unknown", "reason": "no disease-status data"}
    c["EX02"] = {
        "status": _status(non_epithelial or borderline),
        "reason": f"histology {story.histology}",
    }
    c["EX03"] = {"status": _status(len(recs) >= 2), "reason": f"{len(recs)} recurrence(s)"}
    interfering = findings.get("interfering-malignancy")
    c["EX04"] = {
        "status": _status(interfering is True),
        "reason": "interfering malignancy recorded" if interfering is True else "none recorded",
    }
    refractory = _progression_during_platinum(story, cutoff)
    short = pfi is not None and pfi < PFI_SIX_MONTHS
    c["EX05"] = {
        "status": _status(refractory or short),
        "reason": f"recurrence {pfi} days after last platinum"
        if short
        else "progression during platinum"
        if refractory
        else "platinum-sensitive",
    }
    c["EX06"] = {"status": _status(resect == "palliative-only"), "reason": f"surgeon: {resect}"}
    c["EX07"] = {
        "status": _status(resect == "unresectable-metastasis"),
        "reason": f"surgeon: {resect}",
    }
    comorbid = findings.get("comorbidity-precluding-surgery")
    c["EX08"] = {
        "status": _status(comorbid is True),
        "reason": "comorbidity recorded" if comorbid is True else "none recorded",
    }
    facts = {
        "recurrences": recs,
        "pfi_days": pfi,
        "cycles": cycles,
        "ca125_response": response,
        "ca125_response_date": response_day,
        "age": age,
    }
    return {k: c[k] for k in CRITERIA}, facts


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _progression_during_platinum(story: Story, cutoff: date) -> bool:
    """A worsening from a line's first platinum dose to 28 days after its last (EX05)."""
    worse = [s.day for s in story.statuses if s.value == "worsened"]
    worse += [a.day for a in story.assessments if a.response == "PD"]
    lines: dict[int, list[date]] = {}
    for d in story.doses:
        if d.drug in PLATINUM and d.day <= cutoff:
            lines.setdefault(d.line, []).append(d.day)
    for days in lines.values():
        start, end = min(days), max(days) + timedelta(days=28)
        if any(start <= w <= end and w <= cutoff for w in worse):
            return True
    return False


def overall(criteria: dict[str, dict[str, str]]) -> str:
    """yes / no / unknown, as analysis.eligibility_summary defines it."""
    bad = any(
        (k.startswith("IN") and v["status"] == "not_met")
        or (k.startswith("EX") and v["status"] == "met")
        for k, v in criteria.items()
    )
    if bad:
        return "no"
    good = all(
        (k.startswith("IN") and v["status"] == "met")
        or (k.startswith("EX") and v["status"] == "not_met")
        for k, v in criteria.items()
    )
    return "yes" if good else "unknown"


def pfs(story: Story, ref: date) -> dict[str, Any] | None:
    """PFS by the rule table of issue 5 (rules applied in order 2, 3, 4, 5)."""
    start = story.randomised
    if start is None:
        return None
    window_end = min(start + timedelta(days=PFS_WINDOW_DAYS), ref)
    post = [a for a in story.assessments if a.after_randomisation and a.day > start]
    adequate = [a.day for a in post if a.response != "NE"]
    pd = next((a.day for a in post if a.response == "PD"), None)
    candidates = [
        (d, what)
        for d, what in ((pd, "progression"), (story.death, "death"))
        if d is not None and d <= window_end
    ]
    new_drugs = [d.day for d in story.doses if d.phase == "new_therapy" and d.day > start]
    if candidates:
        event_day, what = min(candidates)
        if pd == story.death and what == "progression":
            what = "progression and death"
        therapy = new_drugs[0] if new_drugs else None
        if therapy is not None and therapy < event_day:
            prior = [d for d in adequate if d < therapy]
            adt = prior[-1] if prior else start
            return _pfs(start, adt, 1, 2, f"new anticancer therapy on {therapy} before {what}")
        prior = [d for d in adequate if d < event_day]
        last = prior[-1] if prior else start
        if (event_day - last).days > RULE3_DAYS:
            return _pfs(
                start,
                last,
                1,
                3,
                f"{what} {(event_day - last).days} days after the last adequate assessment",
            )
        return _pfs(start, event_day, 0, 4, f"{what} on {event_day}")
    inside = [d for d in adequate if d <= window_end]
    adt = inside[-1] if inside else start
    return _pfs(start, adt, 1, 5, "no progression or death inside the window")


def _pfs(start: date, adt: date, cnsr: int, rule: int, reason: str) -> dict[str, Any]:
    return {
        "startdt": start.isoformat(),
        "adt": adt.isoformat(),
        "aval": (adt - start).days + 1,
        "cnsr": cnsr,
        "rule": rule,
        "reason": reason,
    }


def subject_truth(
    story: Story,
    ref: date,
    site_id: str,
    patient_id: str,
    research_subject_id: str,
    subject_identifier: str | None,
    consent_data_transfer: bool | None,
) -> dict[str, Any]:
    """One entry of ground_truth.json `subjects`."""
    criteria, facts = eligibility(story, ref)
    recs: list[date] = facts["recurrences"]

    def iso(day: date | None) -> str | None:
        return day.isoformat() if day is not None else None

    return {
        "site_id": site_id,
        "patient_id": patient_id,
        "research_subject_id": research_subject_id,
        "subject_identifier": subject_identifier,
        "scenario": story.scenario + (f"/{story.outcome}" if story.outcome else ""),
        "sex": "female",
        "birth_year": story.birth.year,
        "age_at_consent": facts["age"],
        "consented_on": iso(story.consent),
        "consent_data_transfer": consent_data_transfer,
        "randomised": story.randomised is not None,
        "arm": story.arm,
        "randomised_on": iso(story.randomised),
        "died_on": iso(story.death),
        "recurrences": [{"number": i + 1, "date": d.isoformat()} for i, d in enumerate(recs)],
        "screening_recurrence": (
            {"number": len(recs), "date": recs[-1].isoformat()} if recs else None
        ),
        "pfi_days": facts["pfi_days"],
        "post_recurrence_cycles": facts["cycles"],
        "ca125_response": facts["ca125_response"],
        "ca125_response_date": iso(facts["ca125_response_date"]),
        "eligibility": criteria,
        "eligible": overall(criteria),
        "pfs": pfs(story, ref),
    }
