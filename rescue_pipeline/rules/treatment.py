"""Treatment actually received and the end-of-study status of a randomised subject.

The rule book defines the arms by what a subject is randomised to (§7: the randomised surgery
and the protocol chemotherapy are the trial's treatment); ADaM also asks what she actually
received (ACTARMCD, TRT01A, SAFFL) and where she stands in the study (EOSSTT). These are
**[convention]** readings of the site data, documented in docs/rules.md:

- Actual arm A when a secondary cytoreductive surgery is dated on or after randomisation (up to
  the data cut-off) and before her first progression; otherwise actual arm B when a drug was
  administered in that time; otherwise she was randomised but not treated (no actual arm;
  reason ASSIGNED, NOT TREATED). Treatment after progression (a crossover surgery, later lines)
  and drugs only ordered or reported are not the trial's treatment (the caller selects).
  A subject randomised to A who never had the surgery but had chemotherapy received B's
  treatment; one randomised to B who had the surgery received A's.
- Safety population: randomised and treated (an actual arm).
- End of study: from ResearchSubject.status, its period end and death, over the PFS window
  (randomisation + window days): ONGOING while the site reports her on study; DISCONTINUED
  when she withdrew, died inside the window or left the study before its last day; COMPLETED
  when she was followed to its end. An unknown or missing status leaves it null, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Literal

ActualArm = Literal["A", "B"]
EndOfStudy = Literal["COMPLETED", "DISCONTINUED", "ONGOING"]

NOT_TREATED = "ASSIGNED, NOT TREATED"
SCREEN_FAILURE = "SCREEN FAILURE"

# R4 ResearchSubject.status (http://hl7.org/fhir/research-subject-status) grouped by what it
# says of a randomised subject's participation.
ON_STUDY = frozenset(
    {"on-study", "on-study-intervention", "on-study-observation", "follow-up",
     "pending-on-study", "eligible", "candidate", "potential-candidate", "screening"}
)  # fmt: skip
LEFT_STUDY = frozenset({"off-study"})
WITHDREW = frozenset({"withdrawn", "ineligible", "not-registered"})


def actual_arm(
    *,
    randomised_on: date | None,
    cutoff: date,
    secondary_surgeries: Iterable[date],
    doses: Iterable[date],
) -> ActualArm | None:
    """The arm whose treatment the subject received after randomisation, or None when she was
    never randomised or received nothing by the cut-off ([convention] on rule book §7's
    definition of the arms' treatment)."""
    if randomised_on is None:
        return None

    def after(days: Iterable[date]) -> bool:
        return any(randomised_on <= day <= cutoff for day in days)

    if after(secondary_surgeries):
        return "A"
    if after(doses):
        return "B"
    return None


def arm_null_reason(*, randomised: bool, actual: str | None) -> str | None:
    """ARMNRS: why the planned or the actual arm is null (CDISC codelist ARMNULRS)."""
    if not randomised:
        return SCREEN_FAILURE
    return None if actual else NOT_TREATED


def end_of_study_status(
    *,
    randomised_on: date | None,
    status: str | None,
    ended_on: date | None,
    died_on: date | None,
    window_days: int,
    cutoff: date,
) -> EndOfStudy | None:
    """EOSSTT of a randomised subject at the data cut-off ([convention] on rule book §7's window,
    randomisation .. randomisation + window_days, both ends included): a withdrawal is a
    discontinuation; off-study with a period end before the window's last day is one too; a
    death inside the window is one; off-study at or after the window's last day, or a death
    after it, is a completion; a status that says she is on study is ONGOING; anything else
    (no status, off-study with no date) is null. Dates after the cut-off are not yet known."""
    if randomised_on is None:
        return None
    window_end = randomised_on + timedelta(days=window_days)
    state = (status or "").strip().lower()
    died = died_on if died_on is not None and died_on <= cutoff else None
    ended = ended_on if ended_on is not None and ended_on <= cutoff else None
    if state in WITHDREW:
        return "DISCONTINUED"
    if state in LEFT_STUDY and ended is not None and ended < window_end:
        return "DISCONTINUED"  # left early, whatever happened to her later
    if died is not None:  # a death inside the window ends her follow-up early
        return "COMPLETED" if died > window_end else "DISCONTINUED"
    if state in LEFT_STUDY:  # followed to the window's last day = completed; no date: unknown
        return None if ended is None else "COMPLETED"
    return "ONGOING" if state in ON_STUDY else None
