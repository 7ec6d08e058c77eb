"""Synthetic RESCUE cohort: multi-site FHIR R4 NDJSON, its ground truth and a ready sites.yaml.

`generate(out_dir, patients=N, sites=M, seed=S)` writes `<site-id>/<Type>.ndjson` with a Bulk
Data `manifest.json` per site, `ground_truth.json` and `sites.yaml`. Same arguments, same bytes.

Modules: `scenarios` (catalogue and schedule), `clinical` + `followup` (latent stories, pure),
`story` (their records), `truth` (the rule book read on those records), `flavours` + `fhir`
(rendering per site flavour), `ids`, `faults` (injected input faults), `writer` (streamed files),
`cohort` (the loop).

Scenario catalogue (one block of 44 patients holds each slot once, shuffled by the seed):

Randomised, eligible (19 slots), by PFS outcome:
- `pd` x8: RECIST PD at a scheduled assessment inside the window -> rule 4, event.
- `no_event` x4: assessments to the cut-off, no event -> rule 5, last adequate assessment.
- `death`: death 20-70 days after an adequate assessment -> rule 4.
- `pd_death_same_day`: progression and death on one day -> rule 4 (tie).
- `death_before_first_assessment`: death 25-65 days after randomisation -> rule 4.
- `dropout`: withdrawn after a few assessments -> rule 5.
- `new_therapy`: a new drug (gemcitabine or PLD) before PD -> rule 2, last adequate assessment
  before the therapy.
- `missed_then_pd`: two scheduled assessments missed, then PD (>= 242 days) -> rule 3.
- `missed_then_death`: death 230-320 days after the last adequate assessment -> rule 3.
- `pd_after_730`: the first PD falls on day ~751-761 -> rule 5 at the last assessment <= day 730.
- `ne_then_pd`: an NE assessment just before PD -> rule 4 (gap <= 178 days).
Isolated NE assessments (6 %) also occur elsewhere; two NE in a row never do.

Randomised, special (5 slots; PFS outcome drawn from pd / no_event / death):
- `rand_pfi_183`: PFI exactly 183 days (IN02 met, EX05 not met).
- `rand_ca125_confirm_28d`: no RECIST; CA-125 300 -> 140 (day 21) -> 120 exactly 28 days later:
  GCIG response -> IN03 met.
- `rand_recist_ne_ca125`: RECIST NE with a GCIG response -> IN03 met.
- `dev_no_resectability`: randomised without a resectability record -> eligible unknown.
- `dev_interfering_malignancy`: randomised with an interfering malignancy -> eligible no.

Screen failures (19 slots, ResearchSubject status ineligible, about 1 in 4 without identifier):
`sf_no_recurrence` (EX01 met), `sf_no_disease_status` (IN01/EX01/IN02/IN03 unknown),
`sf_borderline` and `sf_non_epithelial` (EX02), `sf_other_primary_site` (primary coded
C57.4, uterine adnexa: IN01 not met), `sf_second_recurrence` (EX03, IN01 not met),
`sf_short_pfi` (PFI 90-170) and `sf_pfi_182` (IN02 not met, EX05 met), `sf_recist_pd` (IN03),
`sf_ca125_no_response` (no RECIST, CA-125 no response: IN03 not met), `sf_ca125_confirm_27d`
(confirmation only 27 days after the fall: no response, IN03 not met), `sf_ca125_below_2uln`
(pre-treatment 69.9 U/mL, no RECIST: IN03 unknown), `sf_age_18` (IN04), `sf_palliative` (IN05,
EX06), `sf_unresectable` (IN05, EX07), `sf_no_resectability` (IN05 unknown),
`sf_no_data_transfer` (IN06), `sf_interfering_malignancy` (EX04), `sf_comorbidity` (EX08).

Not a trial subject (1 slot): `not_screened`: a full history but no Consent or ResearchSubject;
absent from ground truth `subjects`.

Every story: diagnosis (FIGO II-IV, 30 % neoadjuvant with interval surgery, else primary surgery
with residual disease), six cycles of carboplatin (5 % cisplatin) + paclitaxel (20 % weekly with
day-8/15 doses), optional maintenance (PARP inhibitor period or bevacizumab every 21 days),
end-of-treatment NED with normal CA-125 and surveillance, the recurrence (worsened disease status
and/or SecondaryCancerCondition, CA-125 rise), 3-4 cycles of carboplatin + paclitaxel / PLD
(q28) / gemcitabine (d1+d8) with a CA-125 pre-treatment value 3-10 days before cycle 1, the
response assessment 32-38 days after the last cycle, the surgeon's judgement, consent;
randomised subjects: arm A secondary surgery with residual disease, both arms complete six
cycles, optional maintenance, assessments every 84 (+/-5) days. Stage IV patients may carry a
SecondaryCancerCondition at diagnosis (metastasis, not a recurrence).

Coding varies per subject as at real sites (a stream of its own, so the clinical facts do not
move): the primary is sometimes an ICD-10-CM header code (C56, C57.0, C48.1), an ICD-10-CM child
code (C56.1-C56.3, C57.01, C57.02, some sent dotless), or SNOMED CT alone; drugs sometimes come
as a contained Medication (a local pharmacy code before the RxNorm one), and carboplatin,
paclitaxel and gemcitabine sometimes as product-level RxNorm codes (SCD).
"""

from rescue_pipeline.synth.cohort import (
    DEFAULT_FAULT_RATE,
    DEFAULT_REFERENCE_DATE,
    SynthSummary,
    generate,
)

__all__ = ["DEFAULT_FAULT_RATE", "DEFAULT_REFERENCE_DATE", "SynthSummary", "generate"]
