"""Ground truth for one subject: the RESCUE rule book applied to the story's own records.

These are deliberately small re-statements of the rules (screening window, recurrences, PFI,
cycles, GCIG CA-125 response, eligibility IN01..EX08, PFS rules 1-5), written independently of
the pipeline (they never call rescue_pipeline.rules) so that a subject-by-subject comparison
checks the pipeline rather than repeats it. They read the rule book (RESCUE clinical rules) as:

- §2 window: the screened recurrence is the latest one on or before the consent date (no Consent
  sent: the randomisation date; neither: the reference date). A randomised subject is screened
  up to randomisation; a screen failure up to the period.end her site sends, else up to the
  latest of the consent date and the tumour assessments and resectability judgements dated in
  the 180 days after the screened recurrence.
- §3 recurrence: a worsening (disease status worsened, imaging PD, or SecondaryCancerCondition
  onset) after the end of the first line's chemotherapy that follows a documented time without
  disease (NED / CR, or CA-125 < 35 U/mL) since the previous recurrence. The story knows its own
  lines, so a line ending at a recurrence needs no grouping rule here.
- §6 IN01 = invasive epithelial ovarian/tubal/peritoneal cancer whose screened recurrence is the
  first; platinum sensitivity is judged by IN02 and EX05 alone. A primary of another site
  (recorded with a standard code) fails IN01 whatever its recurrences.
- §4: PFI to the screened recurrence for IN02; EX05 = a worsening from the first platinum dose
  after the screened recurrence to 28 days after its last, or a first-line PFI (last line-1
  platinum dose to the first recurrence) under 183 days.
- §6 IN04: completed years on the consent date (else randomisation), and a partial birth date
  decides only when every day it allows gives the same answer (each day is tried).
- §1 dates: a screening response or a recurrence's onset sent as YYYY-MM is tried on every
  day of its month; a criterion on which the days disagree is unknown, as is a derived value
  (PFI, cycles, CA-125 response) on which they disagree.
- GCIG: pre-treatment value = latest value in the 14 days before the first platinum dose after
  the screened recurrence; values below the detection limit count as the limit (5 U/mL); the
  samples after the fall may rise at most 10 % each unless they stay within the normal range;
  no sample after the first cycle is not evaluable.
- §7 PFS: "before" means strictly before; new therapy inside the window with no candidate
  censors before the therapy (rule 2).
"""

from __future__ import annotations

from dataclasses import replace
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


SCREENING_DAYS = 180


def sent_consent(story: Story) -> date | None:
    """The consent date as the site sends it (None when no Consent resource is sent)."""
    return story.consent if story.consent_sent else None


def recurrence_limit(story: Story, ref: date) -> date:
    """Last date a recurrence may have to be the screened one."""
    return sent_consent(story) or story.randomised or ref


def screening_cutoff(story: Story, ref: date, screened: date | None) -> date:
    """Last date whose records count for eligibility."""
    if story.randomised is not None:
        return story.randomised
    if story.screening_end is not None:
        return story.screening_end
    consent = sent_consent(story)
    candidates = [consent] if consent is not None else []
    if screened is not None:
        days = [a.day for a in story.assessments if not a.after_randomisation]
        days += [f.day for f in story.findings if f.kind == "resectability"]
        candidates += [d for d in days if 0 < (d - screened).days <= SCREENING_DAYS]
    return min(max(candidates), ref) if candidates else ref


def ages_allowed(story: Story, on: date) -> set[int]:
    """Every completed-years age on `on` that the birth date as sent allows."""
    b = story.birth
    if story.birth_precision == "day":
        days = [b]
    elif story.birth_precision == "month":
        days = [date(b.year, b.month, 1) + timedelta(days=i) for i in range(31)]
        days = [d for d in days if d.month == b.month]
    else:
        days = [date(b.year, 1, 1) + timedelta(days=i) for i in range(366)]
        days = [d for d in days if d.year == b.year]
    return {_age(d, on) for d in days if d <= on}


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
    if not after:
        return "not_evaluable", None
    for i, (day, value) in enumerate(after):
        if value > line:
            continue
        before = value
        for later_day, later_value in after[i + 1 :]:
            if later_value > line:
                break
            # in tenths: later > before + 10 %, unless it stays within the normal range
            if 10 * later_value > 11 * before and later_value > ULN_TENTHS:
                break
            if (later_day - day).days >= 28:
                return "response", day
            before = later_value
    return "no_response", None


def _status(met: bool) -> str:
    return "met" if met else "not_met"


def eligibility(story: Story, ref: date) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Each criterion's status and reason, plus the screening facts they were decided on."""
    stories = _every_day_of_the_month(story)
    if len(stories) == 1:
        return _eligibility(story, ref)
    readings = [_eligibility(s, ref) for s in stories]
    criteria: dict[str, dict[str, str]] = {}
    for code, first_reading in readings[0][0].items():
        statuses = {r[0][code]["status"] for r in readings}
        criteria[code] = (
            first_reading
            if len(statuses) == 1
            else {"status": "unknown", "reason": f"{sorted(statuses)} over the month sent"}
        )
    facts = {
        k: v if all(r[1][k] == v for r in readings) else None for k, v in readings[0][1].items()
    }
    # core.recurrences lists recurrences with a full date: read them without the partial onset
    if story.partial_onset is not None:
        kept = tuple(d for d in story.recurrence_conditions if d != story.partial_onset)
        facts["recurrences"] = recurrences(
            replace(story, recurrence_conditions=kept), recurrence_limit(story, ref)
        )
    return criteria, facts


def _month(day: date) -> list[date]:
    first = date(day.year, day.month, 1)
    days = (first + timedelta(days=i) for i in range(31))
    return [d for d in days if d.month == first.month]


def _every_day_of_the_month(story: Story) -> list[Story]:
    """The story once per day a record sent as YYYY-MM may have been on (rule book §1)."""
    if story.partial_assessment:
        sent = max((a for a in story.assessments if not a.after_randomisation), key=lambda a: a.day)
        out = []
        for day in _month(sent.day):
            moved = [replace(a, day=day) if a is sent else a for a in story.assessments]
            out.append(replace(story, assessments=tuple(sorted(moved, key=lambda a: a.day))))
        return out
    if story.partial_onset is not None:
        onset = story.partial_onset
        return [
            replace(
                story,
                recurrence_conditions=tuple(
                    sorted(day if d == onset else d for d in story.recurrence_conditions)
                ),
            )
            for day in _month(onset)
        ]
    return [story]


def _eligibility(story: Story, ref: date) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    recs = recurrences(story, recurrence_limit(story, ref))
    rec = recs[-1] if recs else None
    cutoff = screening_cutoff(story, ref, rec)
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
    age_on = sent_consent(story) or story.randomised
    allowed = ages_allowed(story, age_on) if age_on is not None else set()
    if not allowed:
        c["IN04"] = {"status": "unknown", "reason": "no consent or randomisation date"}
    elif all(a >= 19 for a in allowed):
        c["IN04"] = {"status": "met", "reason": f"age {sorted(allowed)} on {age_on}"}
    elif all(a < 19 for a in allowed):
        c["IN04"] = {"status": "not_met", "reason": f"age {sorted(allowed)} on {age_on}"}
    else:
        c["IN04"] = {"status": "unknown", "reason": f"age {sorted(allowed)}: partial birth date"}
    age = min(allowed) if len(allowed) == 1 else None
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
        if sent_consent(story) is None
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
    refractory = _progression_during_post_recurrence_platinum(story, post, cutoff)
    first_pfi = _first_line_pfi(story, recs)
    short = first_pfi is not None and first_pfi < PFI_SIX_MONTHS
    c["EX05"] = {
        "status": _status(refractory or short),
        "reason": "progression during platinum"
        if refractory
        else f"first recurrence {first_pfi} days after first-line platinum"
        if short
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


def _progression_during_post_recurrence_platinum(
    story: Story, post: list[date], cutoff: date
) -> bool:
    """A worsening from the first post-recurrence platinum dose to 28 days after its last."""
    if not post:
        return False
    worse = [st.day for st in story.statuses if st.value == "worsened"]
    worse += [a.day for a in story.assessments if a.response == "PD"]
    start, end = post[0], post[-1] + timedelta(days=28)
    return any(start <= w <= end and w <= cutoff for w in worse)


def _first_line_pfi(story: Story, recs: list[date]) -> int | None:
    """Days from the last platinum dose of line 1 to the first recurrence."""
    if not recs:
        return None
    line1 = [d.day for d in story.doses if d.line == 1 and d.drug in PLATINUM and d.day < recs[0]]
    return (recs[0] - max(line1)).days if line1 else None


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
    """PFS by the rule book's table (§7; rules applied in order 2, 3, 4, 5)."""
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
    therapy = new_drugs[0] if new_drugs else None
    if therapy is not None and therapy <= window_end:
        prior = [d for d in adequate if d < therapy]
        adt = prior[-1] if prior else start
        return _pfs(start, adt, 1, 2, f"new anticancer therapy on {therapy}, no event")
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


def real_site_classes(story: Story) -> list[str]:
    """Which of the ways real sites send data this subject exercises (for measuring them)."""
    classes = []
    if story.birth_precision != "day":
        classes.append(f"birth_date_{story.birth_precision}_only")
    if not story.consent_sent:
        classes.append("no_consent_sent")
    if story.screening_end is not None:
        classes.append("screening_period_end_sent")
    if story.deleted_record:
        classes.append("record_deleted_at_site")
    if story.corrected_assessment:
        classes.append("late_correction_of_the_response")
    if story.partial_assessment:
        classes.append("response_dated_to_the_month")
    if story.partial_onset is not None:
        classes.append("recurrence_onset_dated_to_the_month")
    if story.scenario == "sf_fast_recurrence":
        classes.append("fast_recurrence")
    if story.scenario == "sf_consent_at_recurrence":
        classes.append("consent_at_recurrence")
    return classes


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
        "classes": real_site_classes(story),
        "sex": "female",
        "birth_year": story.birth.year,
        "age_at_consent": facts["age"] if sent_consent(story) is not None else None,
        "consented_on": iso(sent_consent(story)),
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
