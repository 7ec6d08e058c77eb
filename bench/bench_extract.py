"""Benchmark: extracting from a live FHIR server, ours vs a bare client, same server, same run.

A synthetic cohort (default 2,000 patients, one site) is loaded into a fresh sekmet-fhir server
on 127.0.0.1 (transaction bundles), then each path runs in its own subprocess, `--repeat` times
in turn (best time kept; every run is in the JSON):

- rest_bare:  a plain httpx paging loop over the same types and `_count`, parsing each page
              and following `next` (no landing: the baseline);
- rest_ours:  `kind: fhir` (fetch_and_land): the same searches, written as NDJSON, landed into a
              fresh working database (checks, versions, quarantine, watermarks);
- bulk_bare:  kick-off $export, poll as Retry-After says, download every file to disk;
- bulk_ours:  `kind: bulk` (fetch_and_land): the same, then landed;
- files_bare / files_ours: the files of one completed export, downloaded (bare) vs downloaded
              and landed by our source resuming that export from ops.bulk_jobs: the download
              and landing alone, without the server's export time.

    .venv/bin/python bench/bench_extract.py --patients 2000

Needs sekmet (RESCUE_SEKMET or .venv-sekmet, as the tests). Writes bench/out/extract-<n>.json
and .md; prints the table with the ratio ours / bare in resources per second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE.parent))  # tests.extract.sekmet_server: the tests' server helper

SITE = "site-bench"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _types() -> tuple[str, ...]:
    from rescue_pipeline.extract.rest import DEFAULT_TYPES

    return DEFAULT_TYPES


# ---------------------------------------------------------------- the timed paths (children)


def rest_bare(base_url: str, page_size: int) -> dict[str, Any]:
    import httpx
    import orjson

    started = time.perf_counter()
    resources = pages = 0
    with httpx.Client(timeout=120, headers={"Accept": "application/fhir+json"}) as client:
        for rtype in _types():
            url: str | None = f"{base_url}/{rtype}?_count={page_size}"
            while url:
                page = orjson.loads(client.get(url).content)
                pages += 1
                resources += len(page.get("entry") or ())
                url = next(
                    (link["url"] for link in page.get("link") or () if link["relation"] == "next"),
                    None,
                )
    return {"seconds": time.perf_counter() - started, "resources": resources, "pages": pages}


def _timed_load(load: Callable[..., Any], site: Any, work: Path) -> dict[str, Any]:
    """One of our live loads into a fresh working database, timed to its checkpoint."""
    from rescue_pipeline.warehouse.database import open_work_db

    shutil.rmtree(work, ignore_errors=True)
    con = open_work_db(work / "bench.work.duckdb")
    started = time.perf_counter()
    result = load(con, site, "L1", work_dir=work)
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    con.close()
    total = result.total()
    return {
        "seconds": seconds,
        "resources": total.received,
        "new_versions": total.new_versions,
        "peak_mb": _peak_mb(),
    }


def rest_ours(base_url: str, page_size: int, work: Path) -> dict[str, Any]:
    from rescue_pipeline.config import FhirSource, SiteConfig
    from rescue_pipeline.site_load import fetch_and_land

    site = SiteConfig(id=SITE, source=FhirSource(base_url=base_url, page_size=page_size))
    return _timed_load(fetch_and_land, site, work)


def _poll(client: Any, status_url: str) -> dict[str, Any]:
    while True:
        response = client.get(status_url)
        if response.status_code == 200:
            manifest: dict[str, Any] = response.json()
            return manifest
        time.sleep(float(response.headers.get("Retry-After") or 1))


def _download(client: Any, manifest: dict[str, Any], folder: Path) -> tuple[int, int]:
    files = lines = 0
    folder.mkdir(parents=True, exist_ok=True)
    for n, entry in enumerate(manifest["output"]):
        with (
            client.stream("GET", entry["url"]) as response,
            (folder / f"{n}.ndjson").open("wb") as out,
        ):
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                lines += chunk.count(b"\n")
        files += 1
    return files, lines


def bulk_bare(base_url: str, work: Path) -> dict[str, Any]:
    import httpx

    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        kickoff = client.get(
            f"{base_url}/$export",
            params={"_type": ",".join(_types())},
            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        manifest = _poll(client, kickoff.headers["Content-Location"])
        exported = time.perf_counter() - started
        files, lines = _download(client, manifest, work)
    return {
        "seconds": time.perf_counter() - started,
        "export_seconds": exported,
        "resources": lines,
        "files": files,
    }


def bulk_ours(base_url: str, work: Path) -> dict[str, Any]:
    from rescue_pipeline.config import BulkSource, SiteConfig
    from rescue_pipeline.site_load import fetch_and_land

    site = SiteConfig(id=SITE, source=BulkSource(base_url=base_url))
    return _timed_load(fetch_and_land, site, work)


def export_once(base_url: str) -> dict[str, Any]:
    """A completed export whose files both `files_*` paths then read (not timed)."""
    import httpx

    with httpx.Client(timeout=120) as client:
        kickoff = client.get(
            f"{base_url}/$export",
            params={"_type": ",".join(_types())},
            headers={"Prefer": "respond-async"},
        )
        status_url = kickoff.headers["Content-Location"]
        manifest = _poll(client, status_url)
    return {"status_url": status_url, "manifest": manifest}


def files_bare(status_url: str, work: Path) -> dict[str, Any]:
    import httpx

    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        manifest = client.get(status_url).json()
        files, lines = _download(client, manifest, work)
    return {"seconds": time.perf_counter() - started, "resources": lines, "files": files}


def files_ours(base_url: str, status_url: str, work: Path) -> dict[str, Any]:
    """Our source resuming a stored job whose export is complete: download + land only."""
    from rescue_pipeline.config import BulkSource, SiteConfig
    from rescue_pipeline.extract.bulk_jobs import BulkJob, store_job
    from rescue_pipeline.site_load import fetch_and_land
    from rescue_pipeline.warehouse.database import open_work_db

    shutil.rmtree(work, ignore_errors=True)
    con = open_work_db(work / "bench.work.duckdb")
    store_job(
        con,
        BulkJob(
            SITE, dt.datetime.now(dt.UTC), status_url, status_url, "system", _types(), None, "L0"
        ),
    )
    # delete_when_done off: the same export serves every repeat
    site = SiteConfig(id=SITE, source=BulkSource(base_url=base_url, delete_when_done=False))
    started = time.perf_counter()
    result = fetch_and_land(con, site, "L1", work_dir=work)
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "resources": result.total().received, "peak_mb": _peak_mb()}


CHILDREN = {
    "rest_bare": lambda a: rest_bare(a[0], int(a[1])),
    "rest_ours": lambda a: rest_ours(a[0], int(a[1]), Path(a[2])),
    "bulk_bare": lambda a: bulk_bare(a[0], Path(a[1])),
    "bulk_ours": lambda a: bulk_ours(a[0], Path(a[1])),
    "export_once": lambda a: export_once(a[0]),
    "files_bare": lambda a: files_bare(a[0], Path(a[1])),
    "files_ours": lambda a: files_ours(a[0], a[1], Path(a[2])),
}


def _child(kind: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- the run


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda r: float(r["seconds"]))


def _rate(run: dict[str, Any]) -> float:
    return float(run["resources"]) / float(run["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=1000, help="_count, both REST paths")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        print(json.dumps(CHILDREN[kind](rest)))
        return

    from rescue_pipeline import synth
    from tests.extract.sekmet_server import INSTALL_HINT, SekmetServer, sekmet_binary

    binary, _ = sekmet_binary()
    if not binary.exists():
        raise SystemExit(f"sekmet-fhir is not installed: {INSTALL_HINT}")
    OUT.mkdir(parents=True, exist_ok=True)
    # no deliberate faults: the server validates what it is sent and would refuse them
    data = OUT / f"cohort-{args.patients}-s1-seed{args.seed}-clean"
    if not (data / "ground_truth.json").exists():
        synth.generate(data, patients=args.patients, sites=1, seed=args.seed, fault_rate=0)
    folder = next(p for p in sorted(data.iterdir()) if p.is_dir())
    lines = sum(p.read_bytes().count(b"\n") for p in folder.glob("*.ndjson"))
    size_mb = sum(p.stat().st_size for p in folder.glob("*.ndjson")) / 2**20
    work = OUT / "extract-work"
    shutil.rmtree(work, ignore_errors=True)
    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was

    with SekmetServer(binary, work / "sekmet") as server:
        started = time.perf_counter()
        loaded = server.load(folder)
        load_seconds = time.perf_counter() - started
        print(f"server loaded: {loaded:,} resources in {load_seconds:.1f}s", file=sys.stderr)
        base = server.base_url
        page = str(args.page_size)
        runs: dict[str, list[dict[str, Any]]] = {}
        done = export_once(base)
        status_url = done["status_url"]
        for n in range(args.repeat):
            for kind, child_args in (
                ("rest_bare", (base, page)),
                ("rest_ours", (base, page, str(work / "rest"))),
                ("bulk_bare", (base, str(work / "bulk-bare"))),
                ("bulk_ours", (base, str(work / "bulk"))),
                ("files_bare", (status_url, str(work / "files-bare"))),
                ("files_ours", (base, status_url, str(work / "files"))),
            ):
                runs.setdefault(kind, []).append(_child(kind, *child_args))
                last = runs[kind][-1]
                print(
                    f"run {n + 1} {kind:<11} {last['seconds']:7.2f}s "
                    f"{_rate(last):>9,.0f} resources/s",
                    file=sys.stderr,
                )

    best = {kind: _best(r) for kind, r in runs.items()}
    for kind, run in best.items():
        if kind != "rest_bare" and run["resources"] != best["rest_bare"]["resources"]:
            print(f"warning: {kind} saw {run['resources']} resources", file=sys.stderr)
    pairs = (
        ("REST search (kind: fhir)", "rest_ours", "rest_bare", "httpx paging loop"),
        ("Bulk $export, kick-off to landed", "bulk_ours", "bulk_bare", "kick-off, poll, download"),
        ("Bulk, the files of one export", "files_ours", "files_bare", "plain file downloads"),
    )
    report: dict[str, Any] = {
        "patients": args.patients,
        "resources": lines,
        "ndjson_mb": round(size_mb, 1),
        "page_size": args.page_size,
        "server_load_seconds": round(load_seconds, 1),
        "server_load_resources_per_s": round(loaded / load_seconds),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "runs": runs,
        "comparisons": [
            {
                "what": what,
                "ours_resources_per_s": round(_rate(best[ours])),
                "bare_resources_per_s": round(_rate(best[bare])),
                "ours_seconds": round(best[ours]["seconds"], 2),
                "bare_seconds": round(best[bare]["seconds"], 2),
                "ratio": round(_rate(best[ours]) / _rate(best[bare]), 2),
                "bare": how,
            }
            for what, ours, bare, how in pairs
        ],
    }
    stem = OUT / f"extract-{args.patients}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = [
        f"Extract from sekmet-fhir 0.1.1 on 127.0.0.1: {args.patients:,} patients, "
        f"{lines:,} resources ({size_mb:,.0f} MB NDJSON), _count {args.page_size}, "
        f"best of {args.repeat}; server loaded at {report['server_load_resources_per_s']:,} "
        f"resources/s; {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after.",
        "",
        "| path | ours | bare client, same run | ratio |",
        "|---|---|---|---|",
    ]
    for c in report["comparisons"]:
        table.append(
            f"| {c['what']} | {c['ours_seconds']} s, {c['ours_resources_per_s']:,} resources/s "
            f"| {c['bare_seconds']} s, {c['bare_resources_per_s']:,} resources/s ({c['bare']}) "
            f"| {c['ratio']}x |"
        )
    stem.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
