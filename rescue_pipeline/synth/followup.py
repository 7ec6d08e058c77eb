"""What happens after randomisation: the end of the line, surgery in arm A, maintenance, follow-up.

Pure: a seeded `random.Random` in, records out. Dates keep clear margins around every rule
threshold (2 x 84 + 14 = 182 days, the 730-day window, the data cut-off) except where an outcome
exists to sit on one, so any reasonable reading of the data gives the same PFS.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from rescue_pipeline.synth.story import Assessment, Dose, Lab, OralCourse, Surgery

INTERVAL = 84
JITTER = 5  # two intervals with jitter stay <= 178 days, clear of the 182-day rule-3 threshold
WINDOW_DAYS = 730

MIN_FOLLOW_UP: dict[str, int] = {
    "pd": 100,
    "no_event": 20,
    "death": 180,
    "pd_death_same_day": 100,
    "death_before_first_assessment": 70,
    "dropout": 180,
    "new_therapy": 280,
    "missed_then_pd": 350,
    "missed_then_death": 430,
    "pd_after_730": 775,
    "ne_then_pd": 190,
}
"""Days between randomisation and the reference date that each outcome needs to play out."""

PD_OUTCOMES = frozenset({"pd", "pd_death_same_day", "new_therapy", "missed_then_pd", "ne_then_pd"})


@dataclass
class FollowUp:
    """Records generated after randomisation."""

    doses: list[Dose] = field(default_factory=list)
    oral: list[OralCourse] = field(default_factory=list)
    surgeries: list[Surgery] = field(default_factory=list)
    labs: list[Lab] = field(default_factory=list)
    assessments: list[Assessment] = field(default_factory=list)
    death: date | None = None
    status: str = "on-study"
    last_contact: date | None = None


@dataclass(frozen=True)
class LineSoFar:
    """The post-recurrence line in progress at randomisation."""

    number: int
    partner: str
    interval: int
    cycles_done: int
    screening_response: str | None
    nadir_tenths: int


def _schedule(rng: random.Random, start: date, window_end: date, ref: date) -> list[date]:
    """Scheduled assessment dates up to the cut-off, none within 3 days of the window end."""
    days: list[date] = []
    k = 1
    while True:
        day = start + timedelta(days=INTERVAL * k + rng.randint(-JITTER, JITTER))
        if day >= ref:
            return days
        if abs((day - window_end).days) <= 3:
            day = window_end - timedelta(days=5)
        days.append(day)
        k += 1


def _responses(rng: random.Random, count: int, arm_r0: bool, best: str | None) -> list[str]:
    """Non-progression responses, with at most isolated NE assessments."""
    out: list[str] = []
    for i in range(count):
        if i > 0 and out[-1] != "NE" and rng.random() < 0.06:
            out.append("NE")
        elif arm_r0 or best == "CR":
            out.append(rng.choice(("CR", "CR", "CR", "PR")))
        elif best == "SD":
            out.append(rng.choice(("SD", "SD", "PR")))
        else:
            out.append(rng.choice(("PR", "PR", "SD", "CR")))
    return out


def follow_up(
    rng: random.Random,
    randomised: date,
    arm: str,
    ref: date,
    outcome: str,
    line: LineSoFar,
) -> FollowUp:
    """Generate follow-up for one randomised subject according to its planned outcome."""
    fu = FollowUp()
    window_end = min(randomised + timedelta(days=WINDOW_DAYS), ref)
    sched = _schedule(rng, randomised, window_end, ref)
    in_window = sum(1 for d in sched if d <= window_end)

    n_assess = len(sched)
    pd_index: int | None = None
    death: date | None = None
    new_therapy: date | None = None
    dropout = False
    forced_ne: int | None = None
    if outcome == "pd" or outcome == "pd_death_same_day":
        pd_index = rng.randint(1, max(1, min(in_window, 8))) - 1
        n_assess = pd_index + 1
    elif outcome == "ne_then_pd":
        pd_index = rng.randint(2, max(2, min(in_window, 8))) - 1
        forced_ne = pd_index - 1
        n_assess = pd_index + 1
    elif outcome == "death":
        kd = rng.randint(1, max(1, in_window - 1))
        n_assess = kd
        death = sched[kd - 1] + timedelta(days=rng.randint(20, 70))
    elif outcome == "death_before_first_assessment":
        n_assess = 0
        death = randomised + timedelta(days=rng.randint(25, 65))
    elif outcome == "dropout":
        n_assess = rng.randint(1, max(1, in_window - 1))
        dropout = True
    elif outcome == "new_therapy":
        kn = rng.randint(2, in_window - 1) if in_window >= 3 else 1
        new_therapy = sched[kn - 1] + timedelta(days=rng.randint(14, 40))
        pd_index = kn
        n_assess = kn + 1
    elif outcome == "missed_then_pd":
        km = rng.randint(1, max(1, in_window - 3))
        pd_index = km + 2  # scheduled km+1 and km+2 are missed
        n_assess = km
    elif outcome == "missed_then_death":
        limit = window_end - timedelta(days=324)
        fits = [k for k in range(1, in_window + 1) if sched[k - 1] <= limit]
        n_assess = rng.choice(fits) if fits else 1
        death = sched[n_assess - 1] + timedelta(days=rng.randint(230, 320))
    elif outcome == "pd_after_730":
        pd_index = in_window  # the first scheduled assessment after day 730
        n_assess = in_window
    # "no_event": every scheduled assessment, no event

    kept = list(sched[:n_assess])
    arm_r0 = arm == "A" and rng.random() < 0.6
    responses = _responses(rng, len(kept), arm_r0, line.screening_response)
    if forced_ne is not None:
        responses[forced_ne] = "NE"
    for i in range(1, len(responses)):
        if responses[i] == "NE" and responses[i - 1] == "NE":
            responses[i - 1] = "SD"
    if responses and responses[-1] == "NE" and outcome in ("dropout", "death", "missed_then_death"):
        responses[-1] = "SD"
    if pd_index is not None:
        kept.append(sched[pd_index])
        responses.append("PD")
    pd_day = sched[pd_index] if pd_index is not None else None
    if outcome == "pd_death_same_day":
        death = pd_day
    stop = min(d for d in (death, pd_day, ref) if d is not None)
    if new_therapy is not None:
        stop = min(stop, new_therapy)
    if dropout:
        stop = kept[-1] + timedelta(days=rng.randint(3, 20))
        fu.status = "withdrawn"

    # End of the line: arm A has surgery first, both arms complete six cycles.
    resume = randomised + timedelta(days=rng.randint(2, 10))
    if arm == "A":
        surgery_day = randomised + timedelta(days=rng.randint(10, 24))
        if surgery_day < stop:
            residual = rng.choices(("R0", "R1", "R2"), (70, 20, 10))[0]
            fu.surgeries.append(Surgery(surgery_day, "secondary", residual))
            resume = surgery_day + timedelta(days=rng.randint(25, 35))
    last_cycle: date | None = None
    cycle = resume
    value = line.nadir_tenths
    for _ in range(6 - line.cycles_done):
        if cycle >= stop - timedelta(days=7):
            break
        for drug in ("carboplatin", line.partner):
            fu.doses.append(Dose(cycle, drug, line.number, "chemo"))
        if line.partner == "gemcitabine":
            fu.doses.append(Dose(cycle + timedelta(days=7), "gemcitabine", line.number, "chemo"))
        value = max(20, value * rng.randint(60, 100) // 100)
        fu.labs.append(Lab(cycle, value, after_randomisation=True))
        last_cycle = cycle
        cycle = cycle + timedelta(days=line.interval + rng.randint(0, 3))

    # Maintenance after the line: never a new therapy.
    if last_cycle is not None:
        kind = rng.random()
        start = last_cycle + timedelta(days=rng.randint(28, 42))
        maint_stop = stop - timedelta(days=7)
        if kind < 0.45 and start < maint_stop - timedelta(days=30):
            drug = rng.choice(("olaparib", "niraparib", "rucaparib"))
            end: date | None = min(maint_stop, start + timedelta(days=rng.randint(300, 730)))
            if end is not None and end >= ref - timedelta(days=7):
                end = None
            fu.oral.append(OralCourse(drug, start, end, line.number))
        elif kind < 0.6:
            day = last_cycle + timedelta(days=21)
            for _ in range(22):
                if day >= maint_stop:
                    break
                fu.doses.append(Dose(day, "bevacizumab", line.number, "maintenance"))
                day += timedelta(days=21)

    # New anticancer therapy before progression (rule 2).
    if new_therapy is not None:
        drug = "gemcitabine" if line.partner != "gemcitabine" else "doxorubicin_liposomal"
        day = new_therapy
        for _ in range(6):
            if pd_day is not None and day >= pd_day:
                break
            fu.doses.append(Dose(day, drug, line.number + 1, "new_therapy"))
            day += timedelta(days=21 if drug == "gemcitabine" else 28)

    # Assessments with a CA-125 on the same day.
    nadir = max(30, value)
    for day, response in zip(kept, responses, strict=True):
        fu.assessments.append(Assessment(day, response, after_randomisation=True))
        tenths = nadir * rng.randint(250, 600) // 100 if response == "PD" else nadir
        below = response == "CR" and rng.random() < 0.3
        fu.labs.append(
            Lab(
                day - timedelta(days=rng.randint(0, 2)),
                50 if below else tenths,
                below_lod=below,
                after_randomisation=True,
            )
        )

    if death is None and pd_day is not None and rng.random() < 0.3:
        late = pd_day + timedelta(days=rng.randint(60, 600))
        if late < ref:
            death = late
    fu.death = death
    if death is not None:
        fu.status = "off-study"
    elif pd_day is not None:
        fu.status = "follow-up"
    contacts = [randomised, *kept, *(d.day for d in fu.doses), *(lab.day for lab in fu.labs)]
    if death is not None:
        contacts.append(death)
    fu.last_contact = max(contacts)
    return fu
