"""Benchmark: the quality layer's share of the whole pipeline's time.

One process runs the pipeline's steps in order on a fresh synthetic cohort and times each:
landing (every site), core build, analysis derivation, quality (the Great Expectations suites
per site, findings, completeness), publish (the next warehouse, renamed into place) and the
sponsors' report. Full FHIR validation is left out: it runs off the critical path, as its own
asset, once per new version.

    python bench/bench_quality.py --patients 1000
    python bench/bench_quality.py --patients 100000   # ~5 GB of NDJSON, ~12 minutes

Writes bench/out/quality-<patients>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
KEY = "bench-key-0123456789abcdef"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(data: Path) -> dict[str, object]:
    """The steps as `rescue run` and the Dagster assets call them (site_load), in order."""
    from rescue_pipeline.config import load_config
    from rescue_pipeline.report.render import write_report
    from rescue_pipeline.site_load import (
        build_core_layer,
        check_quality,
        derive_analysis_layer,
        load_site,
        publish_warehouse,
        work_db,
    )

    os.environ.setdefault("RESCUE_PSEUDONYM_KEY", KEY)
    config = load_config(data / "sites.yaml")
    shutil.rmtree(config.work_db.parent, ignore_errors=True)
    seconds: dict[str, float] = {}

    def timed(stage: str, started: float) -> None:
        seconds[stage] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    for site in config.sites:
        load_site(config, site)
    timed("landing", started)
    started = time.perf_counter()
    build_core_layer(config)
    timed("core", started)
    started = time.perf_counter()
    derive_analysis_layer(config)
    timed("analysis", started)
    started = time.perf_counter()
    quality = check_quality(config)
    timed("quality", started)
    started = time.perf_counter()
    publish_warehouse(config, quality)
    timed("publish", started)
    started = time.perf_counter()
    write_report(
        config.warehouse, data / "report", study_id=config.study_id,
        site_ids=[s.id for s in config.sites],
    )  # fmt: skip
    timed("report", started)
    with work_db(config, read_only=True) as con:
        resources = con.execute("SELECT count(*) FROM raw.fhir_resources").fetchall()[0][0]
        findings = con.execute("SELECT count(*) FROM quality.findings").fetchall()[0][0]
    total = sum(seconds.values())
    return {
        "resources": resources,
        "checks": len(quality.checks),
        "findings": findings,
        "seconds": seconds,
        "total_seconds": round(total, 2),
        "quality_share": round(seconds["quality"] / total, 3),
        "quality_and_report_share": round((seconds["quality"] + seconds["report"]) / total, 3),
        "peak_mb": round(_peak_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the cohort folder afterwards")
    args = parser.parse_args()

    from rescue_pipeline import synth

    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"quality-cohort-{args.patients}-s{args.sites}-seed{args.seed}"
    if not (data / "ground_truth.json").exists():
        synth.generate(data, patients=args.patients, sites=args.sites, seed=args.seed)
    result = {"patients": args.patients, **run(data)}
    (OUT / f"quality-{args.patients}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)
    stages = result["seconds"]
    print(f"cohort: {args.patients:,} patients, {result['resources']:,} current resources")
    print("stage seconds: " + ", ".join(f"{k} {v}" for k, v in stages.items()))  # type: ignore[attr-defined]
    print(
        f"quality: {result['checks']} checks, {result['findings']:,} findings; "
        f"{result['quality_share']:.1%} of the pipeline "
        f"({result['quality_and_report_share']:.1%} with the report); "
        f"peak {result['peak_mb']:,} MB"
    )


if __name__ == "__main__":
    main()
