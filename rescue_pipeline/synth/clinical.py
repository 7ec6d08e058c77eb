"""Latent clinical stories: one pure function from (seed, patient index, reference date) to a Story.

The story is built backwards from the consent date (randomisations spread over the 3 years before
the reference date): screening findings, the response assessment, 3-4 post-recurrence cycles, the
recurrence, the platinum-free interval, the line before it (with maintenance and surveillance),
for some a second line and an earlier recurrence, then the first line with its surgery and the
diagnosis. Follow-up after randomisation comes from `followup.py`.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from rescue_pipeline.synth.followup import MIN_FOLLOW_UP, WINDOW_DAYS, LineSoFar, follow_up
from rescue_pipeline.synth.scenarios import SIMPLE_OUTCOMES, is_randomised, scenario_for
from rescue_pipeline.synth.story import (
    Assessment,
    DiseaseStatus,
    Dose,
    Finding,
    Lab,
    OralCourse,
    Story,
    Surgery,
)

ACCRUAL_DAYS = 1095
EPITHELIAL = (
    ("8461/3", 70),
    ("8441/3", 5),
    ("8460/3", 5),
    ("8380/3", 10),
    ("8310/3", 7),
    ("8480/3", 3),
)
STAGES = (("IIB", 4), ("IIIA", 8), ("IIIB", 14), ("IIIC", 48), ("IVA", 10), ("IVB", 16))


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def _tenths(rng: random.Random, low: int, high: int) -> int:
    """A CA-125 value in tenths of U/mL, log-uniform between `low` and `high` U/mL."""
    value: float = 10 * low * (high / low) ** rng.random()
    return round(value)


class _Builder:
    """Accumulates the records of one story; every method adds one phase of the history."""

    def __init__(self, rng: random.Random, index: int, ref: date, scenario: str) -> None:
        self.rng = rng
        self.index = index
        self.ref = ref
        self.scenario = scenario
        self.doses: list[Dose] = []
        self.oral: list[OralCourse] = []
        self.surgeries: list[Surgery] = []
        self.labs: list[Lab] = []
        self.statuses: list[DiseaseStatus] = []
        self.assessments: list[Assessment] = []
        self.conditions: list[date] = []
        self.findings: list[Finding] = []

    # -- lines of therapy -------------------------------------------------------------------
    def chemo_line(
        self,
        last_platinum: date,
        number: int,
        cycles: int,
        partner: str,
        platinum: str = "carboplatin",
        weekly: bool = False,
        interval_surgery: bool = False,
    ) -> date:
        """Add a platinum line whose last platinum dose falls on `last_platinum`; return day 1."""
        rng = self.rng
        interval = 28 if partner == "doxorubicin_liposomal" else 21
        offsets = [0]
        surgery_offset: int | None = None
        for c in range(1, cycles):
            if interval_surgery and c == 3:
                surgery_offset = offsets[-1] + rng.randint(21, 28)
                offsets.append(surgery_offset + rng.randint(28, 42))
            else:
                offsets.append(offsets[-1] + interval + rng.randint(0, 4))
        first = last_platinum - _days(offsets[-1])
        for off in offsets:
            day = first + _days(off)
            self.doses.append(Dose(day, platinum, number, "chemo"))
            self.doses.append(Dose(day, partner, number, "chemo"))
            if weekly:
                for extra in (7, 14):
                    self.doses.append(Dose(day + _days(extra), partner, number, "chemo"))
            elif partner == "gemcitabine":
                self.doses.append(Dose(day + _days(7), partner, number, "chemo"))
        if surgery_offset is not None:
            residual = rng.choices(("R0", "R1", "R2"), (55, 30, 15))[0]
            self.surgeries.append(Surgery(first + _days(surgery_offset), "interval", residual))
        return first

    def maintenance_and_surveillance(
        self, line_end: date, until: date, number: int, with_status: bool
    ) -> None:
        """After a line: NED with normal CA-125, optional maintenance, surveillance visits."""
        rng = self.rng
        ned = line_end + _days(rng.randint(28, 45))
        if with_status:
            self.statuses.append(DiseaseStatus(ned, "ned"))
        self.labs.append(self._normal_lab(ned))
        kind = rng.random()
        if kind < 0.35:
            start = line_end + _days(rng.randint(28, 56))
            end = min(start + _days(rng.randint(300, 730)), until - _days(rng.randint(45, 90)))
            if end > start + _days(30):
                drug = rng.choice(("olaparib", "niraparib", "rucaparib"))
                self.oral.append(OralCourse(drug, start, end, number))
        elif kind < 0.6:
            day = line_end + _days(21)
            for _ in range(15):
                if day >= until - _days(45):
                    break
                self.doses.append(Dose(day, "bevacizumab", number, "maintenance"))
                day += _days(21)
        visit = ned + _days(rng.randint(90, 120))
        while visit < until - _days(45):
            self.labs.append(self._normal_lab(visit))
            if with_status and rng.random() < 0.5:
                self.statuses.append(DiseaseStatus(visit, "ned"))
            visit += _days(rng.randint(90, 120))
        # A last visit without disease after any maintenance has ended, whatever "the end of
        # the line" is taken to mean, so every reading finds the same recurrence.
        last = until - _days(rng.randint(20, 30))
        self.labs.append(self._normal_lab(last))
        if with_status:
            self.statuses.append(DiseaseStatus(last, "ned"))

    def _normal_lab(self, day: date) -> Lab:
        if self.rng.random() < 0.15:
            return Lab(day, 50, below_lod=True)
        return Lab(day, self.rng.randint(60, 300))

    def recurrence(self, day: date, with_status: bool) -> None:
        """A recurrence: worsened status and/or a SecondaryCancerCondition, and a CA-125 rise."""
        mode = self.rng.random() if with_status else 1.0
        if mode < 0.8:
            self.statuses.append(DiseaseStatus(day, "worsened"))
        if with_status and mode >= 0.5:
            self.conditions.append(day)
        self.labs.append(Lab(day - _days(self.rng.randint(0, 5)), _tenths(self.rng, 60, 900)))

    # -- the first line ---------------------------------------------------------------------
    def first_line(self, last_platinum: date) -> tuple[date, str]:
        """Diagnosis, surgery and six cycles; returns (diagnosis date, stage)."""
        rng = self.rng
        neoadjuvant = rng.random() < 0.3
        platinum = "cisplatin" if rng.random() < 0.05 else "carboplatin"
        weekly = rng.random() < 0.2
        first = self.chemo_line(
            last_platinum, 1, 6, "paclitaxel", platinum, weekly, interval_surgery=neoadjuvant
        )
        if neoadjuvant:
            diagnosis = first - _days(rng.randint(10, 25))
        else:
            surgery = first - _days(rng.randint(28, 42))
            residual = rng.choices(("R0", "R1", "R2"), (60, 25, 15))[0]
            self.surgeries.append(Surgery(surgery, "primary", residual))
            diagnosis = surgery - _days(rng.randint(7, 30))
        value = _tenths(rng, 150, 3000)
        self.labs.append(Lab(diagnosis, value))
        for dose in self.doses:
            if dose.line == 1 and dose.drug == platinum:
                value = max(60, value * rng.randint(25, 60) // 100)
                self.labs.append(Lab(dose.day, value))
        return diagnosis, _pick(rng, STAGES)

    # -- the post-recurrence line and screening ----------------------------------------------
    def post_recurrence(
        self,
        assessment_day: date,
        partner: str,
        cycles: int,
        pattern: str,
        response: str | None,
        number: int,
    ) -> tuple[date, date, int]:
        """3-4 cycles before consent with the CA-125 trajectory; returns (C1, recurrence, nadir)."""
        rng = self.rng
        interval = 28 if partner == "doxorubicin_liposomal" else 21
        last = assessment_day - _days(rng.randint(32, 38))
        starts = [last]
        for _ in range(cycles - 1):
            starts.insert(0, starts[0] - _days(interval + rng.randint(0, 3)))
        for day in starts:
            self.doses.append(Dose(day, "carboplatin", number, "chemo"))
            self.doses.append(Dose(day, partner, number, "chemo"))
            if partner == "gemcitabine":
                self.doses.append(Dose(day + _days(7), partner, number, "chemo"))
        c1 = starts[0]
        nadir = self._ca125_course(c1, starts[1:], assessment_day, pattern)
        if response is not None:
            self.assessments.append(Assessment(assessment_day, response))
        return c1, c1 - _days(rng.randint(21, 35)), nadir

    def _ca125_course(
        self, c1: date, later_cycles: list[date], assessment: date, pattern: str
    ) -> int:
        """CA-125 before and during the post-recurrence cycles; returns the last value."""
        rng = self.rng
        pre_day = c1 - _days(rng.randint(3, 10))
        days = [*later_cycles, assessment - _days(rng.randint(0, 2))]
        if pattern in ("confirm_27", "confirm_28"):
            gap = 27 if pattern == "confirm_27" else 28
            self.labs.append(Lab(pre_day, 3000))
            fall = later_cycles[0]
            self.labs.append(Lab(fall, 1400))
            self.labs.append(Lab(later_cycles[1], 1350))
            self.labs.append(Lab(fall + _days(gap), 1200))
            self.labs.append(Lab(later_cycles[2], 1600))
            self.labs.append(Lab(days[-1], 1750))
            return 1750
        if pattern == "below_2uln":
            pre = 699
        else:
            pre = _tenths(rng, 80, 2500)
        if pattern != "no_pre":
            self.labs.append(Lab(pre_day, pre))
        value = pre
        for i, day in enumerate(days):
            if pattern == "no_response":
                value = max(400, pre * rng.randint(60, 130) // 100)
            elif i == 0:
                value = pre * rng.randint(15, 45) // 100
            else:
                value = value * rng.randint(30, 90) // 100
            if value < 50:
                self.labs.append(Lab(day, 50, below_lod=True))
                value = 50
            else:
                self.labs.append(Lab(day, value))
        return value


def _screening_plan(rng: random.Random, scenario: str) -> tuple[str, str | None]:
    """The CA-125 pattern and the RECIST response at the post-recurrence assessment."""
    fixed: dict[str, tuple[str, str | None]] = {
        "sf_recist_pd": ("no_response", "PD"),
        "sf_ca125_no_response": ("no_response", None),
        "sf_ca125_confirm_27d": ("confirm_27", None),
        "rand_ca125_confirm_28d": ("confirm_28", None),
        "sf_ca125_below_2uln": ("below_2uln", None),
        "rand_recist_ne_ca125": ("response", "NE"),
        "sf_no_disease_status": ("no_pre", None),
    }
    if scenario == "sf_consent_at_recurrence":
        return ("no_response", "PD") if rng.random() < 0.5 else ("response", "PR")
    if scenario in fixed:
        return fixed[scenario]
    if rng.random() < 0.08:
        return "response", None
    response = rng.choices(("CR", "PR", "SD"), (15, 60, 25))[0]
    pattern = "no_response" if response == "SD" and rng.random() < 0.4 else "response"
    return pattern, response


def make_story(seed: int, index: int, ref: date) -> Story:
    """The whole latent history of patient `index`; depends only on (seed, index, ref)."""
    rng = random.Random(f"rescue-synth:{seed}:{index}:story")
    scenario, outcome = scenario_for(seed, index)
    randomised = is_randomised(scenario)
    if randomised and outcome is None:
        outcome = rng.choice(SIMPLE_OUTCOMES)
    b = _Builder(rng, index, ref, scenario)
    min_days = MIN_FOLLOW_UP[outcome] if outcome is not None else 10
    anchor = ref - _days(rng.randint(min_days, ACCRUAL_DAYS))
    consent = anchor - _days(rng.randint(0, 7)) if randomised else anchor
    with_status = scenario != "sf_no_disease_status"

    line_number = 1
    screen_response: str | None = None
    nadir = 0
    partner = rng.choices(("paclitaxel", "doxorubicin_liposomal", "gemcitabine"), (45, 30, 25))[0]
    post_cycles = rng.choice((3, 4))
    if scenario in ("sf_ca125_confirm_27d", "rand_ca125_confirm_28d"):
        partner, post_cycles = "paclitaxel", 4
    at_recurrence = scenario == "sf_consent_at_recurrence"
    screening_end: date | None = None
    if scenario == "sf_no_recurrence":
        last_platinum = consent - _days(rng.randint(300, 1500))
        diagnosis, stage = b.first_line(last_platinum)
        b.maintenance_and_surveillance(last_platinum, consent, 1, True)
    else:
        assessment_day = consent - _days(rng.randint(6, 20))
        pattern, screen_response = _screening_plan(rng, scenario)
        if not with_status:
            screen_response = None
        pfi = {
            "sf_short_pfi": rng.randint(90, 170),
            "sf_pfi_182": 182,
            "rand_pfi_183": 183,
            "sf_fast_recurrence": rng.randint(45, 60),
        }.get(scenario, min(1400, 200 + int(rng.expovariate(1 / 260))))
        second = scenario == "sf_second_recurrence"
        line_number = 3 if second else 2
        _c1, rec, nadir = b.post_recurrence(
            assessment_day, partner, post_cycles, pattern, screen_response, line_number
        )
        b.recurrence(rec, with_status)
        last_platinum = rec - _days(pfi)
        if second:
            line2_partner = rng.choice(("paclitaxel", "gemcitabine", "doxorubicin_liposomal"))
            first2 = b.chemo_line(last_platinum, 2, 6, line2_partner)
            b.maintenance_and_surveillance(last_platinum, rec, 2, with_status)
            rec1 = first2 - _days(rng.randint(21, 35))
            b.recurrence(rec1, with_status)
            last_platinum1 = rec1 - _days(rng.randint(200, 800))
            diagnosis, stage = b.first_line(last_platinum1)
            b.maintenance_and_surveillance(last_platinum1, rec1, 1, with_status)
        elif scenario == "sf_fast_recurrence":
            # Platinum-resistant: disease-free at the end-of-treatment visit, back within two
            # months, and retreated with platinum less than 90 days after the first line.
            diagnosis, stage = b.first_line(last_platinum)
            ned = last_platinum + _days(rng.randint(21, 28))  # after any day-8/15 doses
            b.statuses.append(DiseaseStatus(ned, "ned"))
            b.labs.append(b._normal_lab(ned))
        else:
            diagnosis, stage = b.first_line(last_platinum)
            b.maintenance_and_surveillance(last_platinum, rec, 1, with_status)
        finding_day = consent - _days(rng.randint(1, 4))
        if at_recurrence:
            # Consented at recurrence, before the cycles: the response and the surgeon's
            # judgement that decide her come after the consent.
            consent = rec + _days(rng.randint(2, 10))
            finding_day = assessment_day + _days(rng.randint(1, 4))
            if rng.random() < 0.5:
                screening_end = finding_day + _days(rng.randint(1, 5))
        resect = {"sf_palliative": "palliative-only", "sf_unresectable": "unresectable-metastasis"}
        if at_recurrence and screen_response != "PD":
            resect[scenario] = "palliative-only"
        if scenario not in ("sf_no_resectability", "dev_no_resectability"):
            value = resect.get(scenario, "complete-resection-feasible")
            b.findings.append(Finding(finding_day, "resectability", value))
    interfering = scenario in ("sf_interfering_malignancy", "dev_interfering_malignancy")
    if interfering or rng.random() < 0.85:
        b.findings.append(
            Finding(consent - _days(rng.randint(1, 4)), "interfering-malignancy", interfering)
        )
    comorbid = scenario == "sf_comorbidity"
    if comorbid or rng.random() < 0.85:
        b.findings.append(
            Finding(consent - _days(rng.randint(1, 4)), "comorbidity-precluding-surgery", comorbid)
        )

    if scenario == "sf_age_18":
        birth = _years_before(consent, 18) - _days(rng.randint(60, 300))
    else:
        age = min(85, max(35, round(rng.gauss(62, 10))))
        birth = _years_before(diagnosis, age) - _days(rng.randint(0, 364))

    histology = _pick(rng, EPITHELIAL)
    if scenario == "sf_borderline":
        histology = rng.choice(("8442/1", "8472/1"))
    elif scenario == "sf_non_epithelial":
        histology = rng.choice(("8620/3", "9060/3"))
    site = rng.choices(("ovary", "tube", "peritoneum"), (80, 12, 8))[0]
    if scenario == "sf_other_primary_site":
        site = "adnexa"  # uterine adnexa, unspecified: not an IN01 site
    metastasis = (
        rng.choice(("liver", "lung", "pleura"))
        if stage.startswith("IV") and rng.random() < 0.5
        else None
    )

    trial_subject = scenario != "not_screened"
    if not trial_subject:
        b.findings.clear()
    randomisation: date | None = None
    arm: str | None = None
    death: date | None = None
    status = "ineligible"
    last_contact = consent
    if randomised and outcome is not None:
        randomisation = anchor
        arm = rng.choice(("A", "B"))
        fu = follow_up(
            rng,
            randomisation,
            arm,
            ref,
            outcome,
            LineSoFar(
                line_number,
                partner,
                28 if partner == "doxorubicin_liposomal" else 21,
                post_cycles,
                screen_response,
                nadir,
            ),
        )
        b.doses.extend(fu.doses)
        b.oral.extend(fu.oral)
        b.surgeries.extend(fu.surgeries)
        b.labs.extend(fu.labs)
        b.assessments.extend(fu.assessments)
        death, status = fu.death, fu.status
        last_contact = fu.last_contact or randomisation
    elif rng.random() < 0.12:
        late = consent + _days(rng.randint(60, 900))
        if late < ref:
            death = late
            last_contact = late
    if not trial_subject:
        status = "not-registered"

    # How much of the birth date and which records the site sends: drawn from a stream of their
    # own so that the clinical history above stays the same.
    vary = random.Random(f"rescue-synth:{seed}:{index}:variation")
    precision = vary.choices(("day", "month", "year"), (94, 4, 2))[0]
    consent_sent = not (trial_subject and vary.random() < 0.04)
    corrected = vary.random() < 0.05 and any(not a.after_randomisation for a in b.assessments)
    deleted = randomisation is not None and vary.random() < 0.05
    # a randomised subject's screening response (PR or SD) sent as YYYY-MM: decides IN03 when
    # the whole month lies after the first post-recurrence cycle and up to randomisation
    screening = [a for a in b.assessments if not a.after_randomisation]
    partial = (
        randomisation is not None
        and not corrected
        and bool(screening)
        and max(screening, key=lambda a: a.day).response in ("PR", "SD")
        and vary.random() < 0.1
    )
    # a randomised subject's recurrence Condition sent with its onset as YYYY-MM; a first line
    # ended long before it, so the lines of therapy never hinge on it
    onsets = [d for d in b.conditions if consent is not None and d <= consent]
    line1 = [d.day for d in b.doses if d.line == 1 and d.phase == "chemo"]
    onset = (
        max(onsets)
        if scenario == "eligible"  # the boundary scenarios keep their exact dates
        and randomisation is not None
        and not partial
        and onsets
        and line1
        and (max(onsets) - max(line1)).days > 150
        and vary.random() < 0.15
        else None
    )
    # a subject followed through the PFS window alive: about half the sites close her
    # participation (status off-study with period.end); drawn last so nothing above shifts
    study_end = None
    if randomisation is not None and death is None and status in ("on-study", "follow-up"):
        end = max(randomisation + _days(WINDOW_DAYS + vary.randint(0, 45)), last_contact)
        if end < ref and vary.random() < 0.5:
            status, study_end = "off-study", end
    # a subject who dropped out: some sites record it as off-study with the end of her
    # participation rather than as withdrawn
    if randomisation is not None and status == "withdrawn" and vary.random() < 0.5:
        status, study_end = "off-study", min(last_contact + _days(vary.randint(1, 14)), ref)
    # an arm-B subject operated after her progression (a crossover, not the trial's treatment)
    progressed = [a.day for a in b.assessments if a.after_randomisation and a.response == "PD"]
    if arm == "B" and progressed and vary.random() < 0.3:
        day = min(progressed) + _days(vary.randint(20, 60))
        if day < ref and (death is None or day < death):
            b.surgeries.append(Surgery(day, "secondary", vary.choice(("R0", "R1", "R2"))))
    return Story(
        index=index,
        scenario=scenario,
        outcome=outcome,
        birth=birth,
        diagnosis=diagnosis,
        primary_site=site,
        histology=histology,
        stage=stage,
        metastasis_at_diagnosis=metastasis,
        doses=tuple(sorted(b.doses, key=lambda d: (d.day, d.drug))),
        oral=tuple(b.oral),
        surgeries=tuple(sorted(b.surgeries, key=lambda s: s.day)),
        labs=tuple(sorted(b.labs, key=lambda lab: lab.day)),
        statuses=tuple(sorted(b.statuses, key=lambda s: s.day)),
        assessments=tuple(sorted(b.assessments, key=lambda a: a.day)),
        recurrence_conditions=tuple(sorted(b.conditions)),
        findings=tuple(b.findings),
        consent=consent if trial_subject else None,
        consent_disclose=scenario != "sf_no_data_transfer",
        trial_subject=trial_subject,
        has_identifier=randomised or rng.random() < 0.75,
        randomised=randomisation,
        arm=arm,
        subject_status=status,
        death=death,
        last_contact=max(last_contact, consent),
        birth_precision=precision,
        consent_sent=consent_sent,
        screening_end=screening_end,
        study_end=study_end,
        corrected_assessment=corrected,
        deleted_record=deleted,
        partial_assessment=partial,
        partial_onset=onset,
    )
