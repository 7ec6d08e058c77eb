"""The scenario catalogue and how patients are dealt scenarios.

Scenarios come from a fixed schedule of `len(SCHEDULE)` slots, shuffled per block of that many
patients with the seed. Every block holds every scenario once, so even a 250-patient demo shows
each screen failure several times, and patient k's scenario depends only on (seed, k).
"""

from __future__ import annotations

import random
from functools import lru_cache

SCREEN_FAILURES: tuple[str, ...] = (
    "sf_no_recurrence",  # EX01 met: disease status records show no recurrence
    "sf_no_disease_status",  # IN01/EX01/IN02/IN03 unknown: no disease-status data at all
    "sf_borderline",  # EX02 met: borderline (behaviour /1) histology
    "sf_non_epithelial",  # EX02 met: non-epithelial histology (sex cord / germ cell)
    "sf_other_primary_site",  # IN01 not met: a primary coded C57.4 (uterine adnexa), a standard
    # code outside the qualifying hierarchies
    "sf_second_recurrence",  # EX03 met, IN01 not met: second recurrence screened
    "sf_short_pfi",  # IN02 not met, EX05 met: PFI 90-170 days
    "sf_pfi_182",  # boundary: PFI exactly 182 days -> IN02 not met, EX05 met
    "sf_recist_pd",  # IN03 not met: RECIST PD after the post-recurrence cycles
    "sf_ca125_no_response",  # IN03 not met: CA-125 evaluable, no response, no RECIST
    "sf_ca125_confirm_27d",  # boundary: 50 % fall confirmed only 27 days later -> no response
    "sf_ca125_below_2uln",  # boundary: pre-treatment 69.9 U/mL, no RECIST -> IN03 unknown
    "sf_age_18",  # IN04 not met: 18 years old at consent
    "sf_palliative",  # IN05 not met, EX06 met
    "sf_unresectable",  # IN05 not met, EX07 met
    "sf_no_resectability",  # IN05 unknown: no resectability record
    "sf_no_data_transfer",  # IN06 not met: consent without the disclose action
    "sf_interfering_malignancy",  # EX04 met
    "sf_comorbidity",  # EX08 met
    "sf_fast_recurrence",  # EX05/IN02: recurrence 45-60 days after line 1, retreated in < 90
    "sf_consent_at_recurrence",  # consent before the cycles; RECIST PD or palliative after it
)

RANDOMISED_SPECIAL: tuple[str, ...] = (
    "rand_pfi_183",  # boundary: PFI exactly 183 days -> IN02 met
    "rand_ca125_confirm_28d",  # boundary: fall confirmed 28 days later, no RECIST -> response
    "rand_recist_ne_ca125",  # RECIST NE, IN03 met on the CA-125 response
    "dev_no_resectability",  # protocol deviation: randomised with IN05 unknown
    "dev_interfering_malignancy",  # protocol deviation: randomised with EX04 met
)

OUTCOMES: tuple[str, ...] = (
    "pd",  # PFS rule 4: RECIST progression
    "no_event",  # rule 5: censored at the last adequate assessment
    "death",  # rule 4: death without progression
    "pd_death_same_day",  # rule 4: progression and death on the same day (tie)
    "death_before_first_assessment",  # rule 4: death before the first scheduled assessment
    "dropout",  # rule 5: withdrawn, assessments stop
    "new_therapy",  # rule 2: new anticancer drug before progression
    "missed_then_pd",  # rule 3: progression after two or more missed assessments
    "missed_then_death",  # rule 3: death more than 182 days after the last adequate assessment
    "pd_after_730",  # rule 5: progression only after day 730
    "ne_then_pd",  # rule 4 with an NE assessment before the progression
)

ELIGIBLE_OUTCOME_SLOTS: tuple[str, ...] = (
    *("pd",) * 8,
    *("no_event",) * 4,
    "death",
    "pd_death_same_day",
    "death_before_first_assessment",
    "dropout",
    "new_therapy",
    "missed_then_pd",
    "missed_then_death",
    "pd_after_730",
    "ne_then_pd",
)

SCHEDULE: tuple[tuple[str, str | None], ...] = (
    *(("eligible", outcome) for outcome in ELIGIBLE_OUTCOME_SLOTS),
    *((name, None) for name in RANDOMISED_SPECIAL),
    *((name, None) for name in SCREEN_FAILURES),
    ("not_screened", None),
)
"""One block: 19 eligible randomised, 5 special randomised, 21 screen failures, 1 non-subject."""

SIMPLE_OUTCOMES: tuple[str, ...] = ("pd", "pd", "no_event", "death")
"""Outcomes drawn for randomised special scenarios (whose point is screening, not PFS)."""


def is_randomised(scenario: str) -> bool:
    """Whether a scenario ends in randomisation."""
    return scenario == "eligible" or scenario in RANDOMISED_SPECIAL


@lru_cache(maxsize=8)
def _block_order(seed: int, block: int) -> tuple[int, ...]:
    rng = random.Random(f"rescue-synth:{seed}:schedule:{block}")
    order = list(range(len(SCHEDULE)))
    rng.shuffle(order)
    return tuple(order)


def scenario_for(seed: int, index: int) -> tuple[str, str | None]:
    """The (scenario, outcome) of patient `index` (0-based); outcome None when drawn later."""
    block, slot = divmod(index, len(SCHEDULE))
    return SCHEDULE[_block_order(seed, block)[slot]]
