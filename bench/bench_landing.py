"""Benchmark: landing a synthetic cohort vs DuckDB's own NDJSON reader, in the same run.

Each path runs in its own subprocess on the same files, so its peak memory (ru_maxrss) is its own:
- native: DuckDB `read_ndjson_objects` + `json_extract_string` of the keys + `sha256` + insert
  into a fresh database file (no line numbers, bad lines silently dropped: the baseline);
- landing: our landing (parse, structural checks, canonical JSON, sha256, quarantine, dedupe
  against stored versions, load records) into a fresh working database;
- validation: full R4B validation (the step kept off the critical path) on a sample of versions.

    python bench/bench_landing.py --patients 10000

Writes bench/out/landing-<patients>.json and prints a table with the ratio landing / native.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _lines(data: Path) -> int:
    total = 0
    for path in data.glob("*/*.ndjson"):
        with path.open("rb") as f:
            total += sum(1 for _ in f)
    return total


def run_native(data: Path, db: Path, threads: int) -> dict[str, float]:
    import duckdb

    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    con.execute(
        """
        CREATE TABLE versions AS
        SELECT json_extract_string(json, '$.resourceType') AS resource_type,
               json_extract_string(json, '$.id') AS resource_id,
               json_extract_string(json, '$.meta.versionId') AS version_id,
               json_extract_string(json, '$.meta.lastUpdated') AS last_updated,
               json AS payload, sha256(json::VARCHAR) AS payload_sha256
        FROM read_ndjson_objects($glob, ignore_errors = true)
        """,
        {"glob": str(data / "*" / "*.ndjson")},
    )
    con.execute("CHECKPOINT")  # both paths are timed until their data is in the database file
    seconds = time.perf_counter() - started
    rows = con.execute("SELECT count(*) FROM versions").fetchall()[0][0]
    con.close()
    return {"seconds": seconds, "rows": rows, "peak_mb": _peak_mb()}


def run_landing(data: Path, db: Path) -> dict[str, float]:
    from rescue_pipeline.extract.ndjson import discover
    from rescue_pipeline.raw.landing import land_files, new_load_id
    from rescue_pipeline.warehouse.database import open_work_db

    db.unlink(missing_ok=True)
    con = open_work_db(db)
    started = time.perf_counter()
    received = accepted = quarantined = versions = 0
    for site in sorted(p for p in data.iterdir() if p.is_dir()):
        result = land_files(
            con, site.name, discover(site, site.name), load_id=new_load_id(site.name)
        )
        total = result.total()
        received += total.received
        accepted += total.accepted
        quarantined += total.quarantined
        versions += total.new_versions
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    reload_started = time.perf_counter()
    for site in sorted(p for p in data.iterdir() if p.is_dir()):
        land_files(con, site.name, discover(site, site.name), load_id=new_load_id(site.name))
    reload_seconds = time.perf_counter() - reload_started
    con.close()
    return {
        "seconds": seconds,
        "received": received,
        "accepted": accepted,
        "quarantined": quarantined,
        "new_versions": versions,
        "unchanged_reload_seconds": reload_seconds,
        "db_mb": db.stat().st_size / 2**20,
        "peak_mb": _peak_mb(),
    }


def run_validation(db: Path, sample: int) -> dict[str, float]:
    import duckdb

    from rescue_pipeline.raw.validation import validate_payload

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT resource_type, payload::VARCHAR FROM raw.fhir_resource_versions "
        "ORDER BY hash(payload_sha256) LIMIT $n",
        {"n": sample},
    ).fetchall()
    con.close()
    started = time.perf_counter()
    outcomes: dict[str, int] = {}
    for rtype, payload in rows:
        outcome, _ = validate_payload(rtype, payload)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "validated": len(rows), "outcomes": outcomes, "peak_mb": _peak_mb()}  # type: ignore[dict-item]


def _child(kind: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--validation-sample", type=int, default=20_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "native":
            out = run_native(Path(rest[0]), Path(rest[1]), int(rest[2]))
        elif kind == "landing":
            out = run_landing(Path(rest[0]), Path(rest[1]))
        else:
            out = run_validation(Path(rest[0]), int(rest[1]))
        print(json.dumps(out))
        return

    from rescue_pipeline import synth

    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"cohort-{args.patients}-s{args.sites}-seed{args.seed}"
    if not (data / "ground_truth.json").exists():
        started = time.perf_counter()
        synth.generate(data, patients=args.patients, sites=args.sites, seed=args.seed)
        print(f"generated {data} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    lines = _lines(data)
    size_mb = sum(p.stat().st_size for p in data.glob("*/*.ndjson")) / 2**20

    native = _child("native", str(data), str(OUT / "native.duckdb"), str(args.threads))
    landing = _child("landing", str(data), str(OUT / "landing.work.duckdb"))
    validation = _child("validation", str(OUT / "landing.work.duckdb"), str(args.validation_sample))

    native_rate = lines / native["seconds"]
    landing_rate = lines / landing["seconds"]
    report = {
        "patients": args.patients,
        "sites": args.sites,
        "lines": lines,
        "ndjson_mb": round(size_mb, 1),
        "native": native,
        "landing": landing,
        "validation": validation,
        "native_lines_per_s": round(native_rate),
        "landing_lines_per_s": round(landing_rate),
        "ratio_landing_to_native": round(landing_rate / native_rate, 2),
        "validation_resources_per_s": round(validation["validated"] / validation["seconds"]),
    }
    (OUT / f"landing-{args.patients}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"cohort: {args.patients:,} patients, {lines:,} lines, {size_mb:,.0f} MB NDJSON")
    print(f"{'path':<36}{'seconds':>9}{'lines/s':>11}{'peak MB':>10}")
    for name, run, rate in (
        ("DuckDB read_ndjson_objects (native)", native, native_rate),
        ("rescue landing", landing, landing_rate),
    ):
        print(f"{name:<36}{run['seconds']:>9.2f}{rate:>11,.0f}{run['peak_mb']:>10,.0f}")
    print(f"ratio landing / native: {report['ratio_landing_to_native']}x   (target >= 0.5x)")
    print(
        f"landing: {landing['accepted']:,} accepted, {landing['quarantined']:,} quarantined, "
        f"{landing['new_versions']:,} versions, DuckDB file {landing['db_mb']:,.0f} MB; "
        f"unchanged reload {landing['unchanged_reload_seconds']:.2f}s"
    )
    print(
        "full R4B validation (off the critical path): "
        f"{report['validation_resources_per_s']:,} resources/s "
        f"on a sample of {validation['validated']:,}"
    )


if __name__ == "__main__":
    main()
