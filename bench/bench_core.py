"""Benchmark: flattening + core build vs DuckDB's own NDJSON extraction, in the same run, and the
analysis derivation (eligibility, ADSL, ADTTE) timed after it.

- native: `read_ndjson_objects` + `json_extract_string` of a dozen elements over the cohort's
  NDJSON files into a table (no versions, no terminology, no rules: the baseline);
- core: our core build (ViewDefinitions compiled to SQL over raw.fhir_resources, terminology
  joins, set-based SQL, regimen and recurrence rules) on the landed cohort.

    python bench/bench_core.py --patients 1000
    python bench/bench_core.py --patients 100000   # ~5 GB of NDJSON, several minutes

Each runs in its own subprocess (peak memory is its own). Writes bench/out/core-<patients>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
KEY = b"bench-key-0123456789abcdef"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_native(data: Path, db: Path) -> dict[str, float]:
    import duckdb

    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    started = time.perf_counter()
    con.execute(
        """
        CREATE TABLE flat AS
        SELECT json_extract_string(json, '$.resourceType') AS resource_type,
               json_extract_string(json, '$.id') AS id,
               json_extract_string(json, '$.status') AS status,
               json_extract_string(json, '$.subject.reference') AS subject,
               json_extract_string(json, '$.code.coding[0].system') AS system,
               json_extract_string(json, '$.code.coding[0].code') AS code,
               json_extract_string(json, '$.effectiveDateTime') AS effective,
               json_extract_string(json, '$.valueQuantity.value') AS value,
               json_extract_string(json, '$.valueQuantity.code') AS unit,
               json_extract_string(json, '$.valueCodeableConcept.coding[0].code') AS answer,
               json_extract_string(json, '$.medicationCodeableConcept.coding[0].code') AS drug,
               json_extract_string(json, '$.meta.lastUpdated') AS updated
        FROM read_ndjson_objects($glob, ignore_errors = true)
        """,
        {"glob": str(data / "*" / "*.ndjson")},
    )
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM flat").fetchall()[0][0]
    con.close()
    return {"seconds": seconds, "rows": rows, "peak_mb": _peak_mb()}


def land(data: Path) -> dict[str, float]:
    from rescue_pipeline.config import load_config
    from rescue_pipeline.site_load import load_site

    config = load_config(data / "sites.yaml")
    started = time.perf_counter()
    for site in config.sites:
        load_site(config, site)
    return {"seconds": time.perf_counter() - started, "peak_mb": _peak_mb()}


def run_core(data: Path) -> dict[str, object]:
    from rescue_pipeline.analysis.build import derive_analysis
    from rescue_pipeline.config import load_config
    from rescue_pipeline.core.build import build_core
    from rescue_pipeline.site_load import work_db

    config = load_config(data / "sites.yaml")
    with work_db(config) as con:
        resources = con.execute("SELECT count(*) FROM raw.fhir_resources").fetchall()[0][0]
        started = time.perf_counter()
        result = build_core(con, config, key=KEY, today=dt.date(2026, 6, 30))
        con.execute("CHECKPOINT")
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        derived = derive_analysis(con, config, today=dt.date(2026, 6, 30))
        con.execute("CHECKPOINT")
        derivation_seconds = time.perf_counter() - started
    return {
        "derivation_seconds": derivation_seconds,
        "derivation_rows": derived.rows,
        "seconds": seconds,
        "resources": resources,
        "rows": result.rows,
        "stages": result.stage_seconds,
        "peak_mb": _peak_mb(),
    }


def _child(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        out: dict[str, object]
        if kind == "native":
            out = dict(run_native(Path(path), Path(rest[0])))
        elif kind == "land":
            out = dict(land(Path(path)))
        else:
            out = run_core(Path(path))
        print(json.dumps(out))
        return

    from rescue_pipeline import synth

    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"core-cohort-{args.patients}-s{args.sites}-seed{args.seed}"
    if not (data / "ground_truth.json").exists():
        synth.generate(data, patients=args.patients, sites=args.sites, seed=args.seed)
    if not (data / "warehouse" / "rescue.work.duckdb").exists():
        _child("land", str(data))
    native = _child("native", str(data), str(OUT / "core-native.duckdb"))
    core = _child("core", str(data))
    lines = int(native["rows"])  # type: ignore[call-overload]
    native_rate = lines / float(native["seconds"])  # type: ignore[arg-type]
    core_rate = int(core["resources"]) / float(core["seconds"])  # type: ignore[call-overload, arg-type]
    report = {
        "patients": args.patients,
        "native": native,
        "core": core,
        "native_resources_per_s": round(native_rate),
        "core_resources_per_s": round(core_rate),
        "ratio_core_to_native": round(core_rate / native_rate, 2),
    }
    (OUT / f"core-{args.patients}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"cohort: {args.patients:,} patients; {core['resources']:,} current resources")
    print(
        f"native read_ndjson_objects + json_extract_string: {native['seconds']:.2f} s, "
        f"{native_rate:,.0f} lines/s, peak {native['peak_mb']:,.0f} MB"
    )
    print(
        f"core build (flatten + SQL + rules):               {core['seconds']:.2f} s, "
        f"{core_rate:,.0f} resources/s, peak {core['peak_mb']:,.0f} MB"
    )
    print(f"ratio core / native: {report['ratio_core_to_native']}x   (target >= 0.5x)")
    print(
        f"analysis derivation: {core['derivation_seconds']:.2f} s "
        f"({float(core['derivation_seconds']) / float(core['seconds']):.0%} of the core build)"  # type: ignore[arg-type]
    )
    print("stages (s): " + ", ".join(f"{k} {v}" for k, v in core["stages"].items()))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
