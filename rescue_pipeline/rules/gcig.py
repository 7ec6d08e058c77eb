"""GCIG CA-125 response (Rustin GJS et al., "Definitions for response and progression in
ovarian cancer clinical trials incorporating RECIST 1.1 and CA 125 agreed by the Gynecological
Cancer Intergroup (GCIG)", Int J Gynecol Cancer 2011;21:419-423).

Response: a pre-treatment sample within 14 days before the start of treatment with a value of
at least twice the upper limit of normal; a fall of at least 50% from it, confirmed by a sample
at least 28 days later that is still at least 50% down, with no sample in between above the 50%
line, and the samples in between and the confirming one no higher than the one before + 10 %
(a change within the normal range, at or below the ULN, is ignored). The response date is the
date of the first 50% fall. Values below the detection limit are read at the limit (as
reported). Without a qualifying pre-treatment sample, or with no sample after the start of
treatment, the response is not evaluable (IN03 `unknown`; rule book §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

PRE_TREATMENT_DAYS = 14
CONFIRMATION_DAYS = 28
RISE_ALLOWED = 1.10  # each later sample at most 10 % above the one before (assay variability)

Outcome = Literal["response", "no_response", "not_evaluable"]


@dataclass(frozen=True)
class Ca125:
    day: date
    value: float  # U/mL
    source_id: str


@dataclass(frozen=True)
class GcigResponse:
    outcome: Outcome
    day: date | None  # date of the first 50% fall, for a response
    baseline: Ca125 | None
    evidence: tuple[str, ...]  # source ids decided on
    reason: str


def gcig_response(
    values: Sequence[Ca125], *, treatment_start: date | None, uln: float = 35.0
) -> GcigResponse:
    """GCIG CA-125 response to the treatment starting on `treatment_start`.

    `values` are the samples the rule may use (callers cut them at randomisation or consent).
    """
    if treatment_start is None:
        return GcigResponse("not_evaluable", None, None, (), "no treatment start")
    ordered = sorted(values, key=lambda v: (v.day, v.source_id))
    window = treatment_start - timedelta(days=PRE_TREATMENT_DAYS)
    pre = [v for v in ordered if window <= v.day < treatment_start]
    if not pre:
        return GcigResponse("not_evaluable", None, None, (), "no sample in the 14 days before")
    baseline = pre[-1]
    if baseline.value < 2 * uln:
        return GcigResponse(
            "not_evaluable",
            None,
            baseline,
            (baseline.source_id,),
            f"pre-treatment {baseline.value:g} U/mL is below 2 x ULN ({2 * uln:g})",
        )
    line = baseline.value / 2
    after = [v for v in ordered if v.day > treatment_start]
    if not after:
        return GcigResponse(
            "not_evaluable", None, baseline, (baseline.source_id,),
            "no sample after the start of treatment",
        )  # fmt: skip
    for i, first in enumerate(after):
        if first.value > line:
            continue
        previous = first
        for later in after[i + 1 :]:
            if later.value > line:
                break
            if later.value > previous.value * RISE_ALLOWED and later.value > uln:
                break  # a rise beyond assay variability (changes in the normal range ignored)
            if (later.day - first.day).days >= CONFIRMATION_DAYS:
                return GcigResponse(
                    "response",
                    first.day,
                    baseline,
                    (baseline.source_id, first.source_id, later.source_id),
                    f"50% fall on {first.day} from {baseline.value:g}, confirmed {later.day}",
                )
            previous = later
    return GcigResponse(
        "no_response",
        None,
        baseline,
        (baseline.source_id,),
        f"no confirmed 50% fall from {baseline.value:g} U/mL",
    )


MIN_CONFIRMATION_DAYS = 7


@dataclass(frozen=True)
class GcigProgression:
    day: date
    threshold: float
    evidence: tuple[str, ...]
    reason: str


def gcig_progression(
    values: Sequence[Ca125], *, baseline: float | None, uln: float = 35.0
) -> GcigProgression | None:
    """GCIG CA-125 progression after the start of follow-up (Rustin et al. 2011, table 3).

    `values` are the samples after the start; `baseline` the last value before it. The
    threshold is 2 x ULN when the baseline was normal or the values normalised, and 2 x the
    nadir when an elevated baseline never normalised. Progression is a value at or above the
    threshold confirmed by another at least 7 days later (none in between below it), dated at
    the first of the two.
    """
    ordered = sorted(values, key=lambda v: (v.day, v.source_id))
    if not ordered:
        return None
    elevated = baseline is not None and baseline > uln
    normalised = any(v.value <= uln for v in ordered)
    for i, first in enumerate(ordered):
        nadir = min([v.value for v in ordered[: i + 1]] + ([baseline] if baseline else []))
        threshold = 2 * nadir if elevated and not any(
            v.value <= uln for v in ordered[: i + 1]
        ) else 2 * uln  # fmt: skip
        if first.value < threshold:
            continue
        for later in ordered[i + 1 :]:
            if later.value < threshold:
                break
            if (later.day - first.day).days >= MIN_CONFIRMATION_DAYS:
                rule = "2 x nadir" if elevated and not normalised else "2 x ULN"
                return GcigProgression(
                    first.day, threshold, (first.source_id, later.source_id),
                    f"CA-125 >= {rule} ({threshold:g} U/mL) on {first.day}, confirmed {later.day}",
                )  # fmt: skip
    return None
