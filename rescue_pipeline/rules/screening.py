"""The screening window: which records count for eligibility (rule book §2).

- The screened recurrence is the latest recurrence dated on or before the consent date; without
  a Consent, on or before the randomisation date; without either, on or before the data cut-off
  (`recurrence_limit`).
- A randomised subject's window ends on the randomisation date. A subject never randomised (a
  screen failure) is screened until `ResearchSubject.period.end` when the site sends it; otherwise
  until the latest of the consent date and the screening assessments (RECIST or imaging disease
  status, the surgeon's resectability judgement) dated within `SCREENING_DAYS` after the screened
  recurrence **[convention]**. A subject may consent at recurrence, before the post-recurrence
  chemotherapy: the response and the judgement that follow still decide her eligibility. CA-125
  samples never extend the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

SCREENING_DAYS = 180


def recurrence_limit(consent: date | None, randomised: date | None, cutoff: date) -> date:
    """The last day a recurrence may be dated to be the screened one (rule book §2)."""
    return consent or randomised or cutoff


def window_end(
    *,
    randomised: date | None,
    period_end: date | None,
    consent: date | None,
    screened_recurrence: date | None,
    assessments: Iterable[date],
    cutoff: date,
) -> date:
    """The last day whose records count for this subject's eligibility (rule book §2)."""
    if randomised is not None:
        return randomised
    if period_end is not None:
        return period_end
    ends = [consent] if consent is not None else []
    if screened_recurrence is not None:
        last = screened_recurrence + timedelta(days=SCREENING_DAYS)
        ends += [day for day in assessments if screened_recurrence < day <= last]
    return min(max(ends), cutoff) if ends else cutoff
