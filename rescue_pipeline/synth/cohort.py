"""The generator's main loop: one patient at a time, story -> resources -> faults -> files.

Memory stays bounded: a patient's resources are written before the next patient is made, and the
ground truth is streamed. Patient k's site, story, ids and faults depend only on (seed, k) and on
earlier patients (subject numbers and line numbers count upwards), never on later ones.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from rescue_pipeline.synth.clinical import make_story
from rescue_pipeline.synth.faults import KINDS, FaultLine, Injector, dumps, record
from rescue_pipeline.synth.fhir import (
    DELETED_AT_SITE,
    LATE_OLDER_VERSION,
    deletion_bundle,
    medication_resource,
    render,
)
from rescue_pipeline.synth.flavours import Site, make_site
from rescue_pipeline.synth.truth import INTERVAL, PFI_SIX_MONTHS, ULN_TENTHS, WINDOW, subject_truth
from rescue_pipeline.synth.writer import GroundTruthWriter, SiteFiles, atomic_write, sites_yaml

DEFAULT_REFERENCE_DATE: date = date(2026, 6, 30)
DEFAULT_FAULT_RATE: float = 0.02
MAX_SITES = 26
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SynthSummary:
    """What `generate` wrote, for the CLI to print."""

    out_dir: Path
    patients: int
    sites: list[str]
    files: dict[str, dict[str, int]]  # site id -> resource type -> lines written
    faults: dict[str, int]  # kind -> count
    ground_truth_path: Path
    config_path: Path
    seconds: float


def _check(patients: int, sites: int, fault_rate: float) -> None:
    if patients < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    if not 1 <= sites <= MAX_SITES:
        raise ValueError(f"sites must be between 1 and {MAX_SITES}, got {sites}")
    if sites > patients:
        raise ValueError(f"sites ({sites}) cannot exceed patients ({patients})")
    if not 0 <= fault_rate <= 0.5:
        raise ValueError(f"fault_rate must be between 0 and 0.5, got {fault_rate}")


def site_of(seed: int, index: int, sites: int) -> int:
    """Patient `index`'s site: the first patients open one site each, then unequal weights."""
    if index < sites:
        return index
    rng = random.Random(f"rescue-synth:{seed}:{index}:site")
    return rng.choices(range(sites), [1 / (1 + 0.4 * s) for s in range(sites)])[0]


class _Run:
    """State of one generation run: open site files, counters, the ground-truth stream."""

    def __init__(
        self, out_dir: Path, sites: list[Site], seed: int, ref: date, fault_rate: float
    ) -> None:
        self.sites = sites
        self.seed = seed
        self.ref = ref
        self.rate = fault_rate
        self.files = {s.id: SiteFiles(out_dir, s) for s in sites}
        self.subject_numbers: Counter[str] = Counter()
        self.medications: dict[str, set[str]] = {s.id: set() for s in sites}
        self.faults: Counter[str] = Counter()
        self.truth = GroundTruthWriter(out_dir)

    def _fault(
        self, site: Site, rtype: str, line: FaultLine, number: int, related: int | None
    ) -> None:
        fault = record(line, site.id, f"{rtype}.ndjson", number, related)
        self.truth.add("faults", fault)
        stats = self.files[site.id].stats[rtype]
        if fault["reason"]:
            stats.quarantined[fault["reason"]] += 1
        elif line.kind == "duplicate":
            stats.duplicates += 1
        elif line.kind in ("updated_version", "unknown_element", "late_correction"):
            stats.extra_versions += 1
        elif line.kind == "deleted_at_site":
            stats.deleted += 1
        self.faults[line.kind] += 1

    def patient(self, index: int) -> None:
        site = self.sites[site_of(self.seed, index, len(self.sites))]
        files = self.files[site.id]
        story = make_story(self.seed, index, self.ref)
        if self.rate == 0:  # a clean cohort: no messy records either (no corrections, deletions)
            story = replace(story, corrected_assessment=False, deleted_record=False)
        number = None
        if story.trial_subject and story.has_identifier:
            self.subject_numbers[site.id] += 1
            number = self.subject_numbers[site.id]
        rendered = render(story, site, self.seed, self.ref, number)
        for drug in rendered.medications:
            if drug not in self.medications[site.id]:
                self.medications[site.id].add(drug)
                files.write(
                    "Medication", dumps(medication_resource(self.seed, site, drug, self.ref))
                )
        injector = Injector(self.seed, index, self.rate, self.ref, site.local)
        deferred: list[tuple[str, FaultLine, int]] = []
        mains: dict[str, int] = {}
        for item in rendered.resources:
            rtype = item.resource_type
            if item.role == DELETED_AT_SITE:  # sent in error, then deleted at the site
                rid = str(item.resource["id"])
                sent = FaultLine(dumps(item.resource), "deleted_at_site", rtype, rid)
                self._fault(site, rtype, sent, files.write(rtype, sent.data), None)
                files.write_deletion(deletion_bundle(rtype, rid, item.resource["meta"]))
                continue
            if item.role == LATE_OLDER_VERSION:  # an older version arriving after the current
                rid = str(item.resource["id"])
                late = FaultLine(dumps(item.resource), "late_correction", rtype, rid)
                self._fault(site, rtype, late, files.write(rtype, late.data), mains.get(rid))
                continue
            inj = injector.inject(item)
            for line in inj.before:
                number = files.write(rtype, line.data)
                self._fault(site, rtype, line, number, number + 1)  # the resource's own line
            main = files.write(rtype, inj.main)
            mains[str(item.resource.get("id"))] = main
            for line in inj.after:
                self._fault(
                    site,
                    rtype,
                    line,
                    files.write(rtype, line.data),
                    main if line.related == "main" else None,
                )
            deferred += [(rtype, line, main) for line in inj.deferred]
        for rtype, line, main in deferred:
            self._fault(site, rtype, line, files.write(rtype, line.data), main)
        if story.trial_subject and rendered.research_subject_id is not None:
            self.truth.add(
                "subjects",
                subject_truth(
                    story,
                    self.ref,
                    site.id,
                    rendered.patient_id,
                    rendered.research_subject_id,
                    rendered.subject_identifier,
                    story.consent_disclose
                    if story.consent is not None and story.consent_sent
                    else None,
                ),
            )


def generate(
    out_dir: Path,
    *,
    patients: int,
    sites: int,
    seed: int,
    reference_date: date = DEFAULT_REFERENCE_DATE,
    fault_rate: float = DEFAULT_FAULT_RATE,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic multi-site cohort, its ground truth and sites.yaml into `out_dir`."""
    _check(patients, sites, fault_rate)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    site_list = [make_site(i) for i in range(sites)]
    run = _Run(out_dir, site_list, seed, reference_date, fault_rate)
    step = max(1, patients // 100)
    for index in range(patients):
        run.patient(index)
        if progress is not None and ((index + 1) % step == 0 or index + 1 == patients):
            progress(index + 1, patients)

    transaction_time = f"{reference_date.isoformat()}T00:00:00Z"
    files = {s.id: run.files[s.id].close(transaction_time) for s in site_list}
    head = {
        "generator": {
            "seed": seed,
            "patients": patients,
            "sites": sites,
            "reference_date": reference_date.isoformat(),
            "fault_rate": fault_rate,
            "version": GENERATOR_VERSION,
        },
        "analysis": {
            "data_cutoff": reference_date.isoformat(),
            "assessment_interval_days": INTERVAL,
            "assessment_window_days": WINDOW,
            "pfi_days_6_months": PFI_SIX_MONTHS,
            "uln_u_per_ml": ULN_TENTHS // 10,
        },
        "sites": {
            s.id: {
                "code": s.code,
                "flavour": s.flavour,
                "files": {
                    f"{rtype}.ndjson": run.files[s.id].stats[rtype].expectation()
                    for rtype in sorted(run.files[s.id].stats)
                },
            }
            for s in site_list
        },
    }
    run.truth.finish(head)
    command = (
        f"rescue synth --patients {patients} --sites {sites} --seed {seed} "
        f"--reference-date {reference_date.isoformat()} --fault-rate {fault_rate}"
    )
    config_path = out_dir / "sites.yaml"
    atomic_write(config_path, sites_yaml(site_list, reference_date.isoformat(), command).encode())
    return SynthSummary(
        out_dir=out_dir,
        patients=patients,
        sites=[s.id for s in site_list],
        files=files,
        faults={kind: run.faults[kind] for kind in KINDS if run.faults[kind]},
        ground_truth_path=run.truth.path,
        config_path=config_path,
        seconds=round(time.perf_counter() - started, 3),
    )
