"""Benchmark: the whole `rescue run`, stage by stage, against DuckDB's bare landing of the same
files, on clean and faulty cohorts at several sizes.

    python bench/bench_pipeline.py --sizes 1000,10000 --flavours clean,faulty
    python bench/bench_pipeline.py --sizes 100000 --flavours clean   # ~5 GB NDJSON, ~12 min
    python bench/bench_pipeline.py --sizes 5000 --repeat 3          # median of three runs each

For each cohort (`rescue synth`, cached under bench/out/data/; clean = --fault-rate 0, faulty =
the default 2 % of injected faults):
- baseline: DuckDB's `read_ndjson_objects` + key extraction + sha256 into a fresh file, alone in
  its own process (bench_landing.py's `native` path), in the same benchmark run;
- the pipeline: `rescue run` exactly as a user runs it, in its own process, with a fresh
  warehouse and a Dagster instance of its own. Per stage (landing, core, analysis, quality,
  publish, report, checks, validation) the seconds come from Dagster's own step records; peak
  memory is the resident memory of the whole process tree (the run and its worker processes),
  sampled every 0.1 s, its maximum while the stage ran. What is left of the wall time is the command
  line and Dagster around the steps ("orchestration");
- the unchanged reload: `rescue run` once more on the same files.

ratio = baseline seconds / our seconds (1.0x: as fast as DuckDB landing alone). "to the
report" is the wall time from the command's start until the report step ends; the asset checks
(annotations for the Dagster UI) and validation run after it, as nothing published waits for
them. Writes bench/out/pipeline-<sizes>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESCUE = Path(sys.executable).with_name("rescue")
KEY = "bench-key-0123456789abcdef"
STAGES = ("landing", "core", "analysis", "quality", "publish", "report", "checks", "validation")
# Dagster step key → stage. "checks" are the asset checks that annotate assets for the UI
# (reading back the quality run, the sites' landing times): they run after the report.
STEP_STAGE = {
    "raw__fhir_resources": "landing",
    "core_tables": "core",
    "analysis_tables": "analysis",
    "quality__results": "quality",
    "warehouse__published": "publish",
    "report__sponsors": "report",
    "quality_checks": "checks",
    "raw__fhir_resources_sites_loaded_recently": "checks",
    "raw__version_validation": "validation",
}


@dataclass
class Sampler:
    """Resident memory of a process and its descendants, every 0.1 s, with the time."""

    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), sum(_rss(p) for p in _tree(self.pid))))
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()

    def peak_mb(self, start: float | None = None, end: float | None = None) -> float:
        window = [
            rss
            for t, rss in self.samples
            if (start is None or t >= start - 0.1) and (end is None or t <= end + 0.1)
        ]
        return round(max(window, default=0) / 2**20)


PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(root: int) -> list[int]:
    """`root` and its descendants, read from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, ()))
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cohort(flavour: str, patients: int, seed: int) -> Path:
    folder = OUT / "data" / f"{flavour}-{patients}-seed{seed}"
    if not (folder / "ground_truth.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        rate = ["--fault-rate", "0"] if flavour == "clean" else []
        command = [str(RESCUE), "synth", "--patients", str(patients), "--sites", "3"]
        subprocess.run(
            [*command, "--seed", str(seed), *rate, "--out", str(folder)],
            check=True,
            capture_output=True,
        )
    return folder


def baseline(data: Path) -> dict[str, float]:
    """DuckDB's bare landing of the same files, in its own process."""
    db = OUT / "native.duckdb"
    threads = str(len(os.sched_getaffinity(0)))
    command = [sys.executable, str(HERE / "bench_landing.py"), "--child", "native"]
    done = subprocess.run(
        [*command, str(data), str(db), threads],
        capture_output=True,
        text=True,
        check=True,
    )
    db.unlink(missing_ok=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_pipeline(data: Path, home: Path) -> tuple[float, float, Sampler, str]:
    """The run's start (epoch seconds), its wall time, its memory samples and its output."""
    env = {
        **os.environ,
        "RESCUE_PSEUDONYM_KEY": KEY,
        "DAGSTER_HOME": str(home),
        "RESCUE_CONFIG": str(data / "sites.yaml"),
    }
    started = time.time()
    process = subprocess.Popen(
        [str(RESCUE), "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = Sampler(process.pid)
    sampler.start()
    out, err = process.communicate()
    sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"rescue run failed ({process.returncode}): {err.strip()[-2000:]}")
    return started, time.time() - started, sampler, out


def stage_windows(home: Path) -> tuple[dict[str, list[tuple[float, float]]], float | None]:
    """Each stage's (start, end) steps, from the Dagster instance the run wrote to, and when
    the report step ended if it succeeded."""
    import dagster as dg
    from dagster._core.execution.stats import StepEventStatus

    windows: dict[str, list[tuple[float, float]]] = {s: [] for s in STAGES}
    report_end = None
    instance = dg.DagsterInstance.from_config(str(home))
    for run in instance.get_runs():
        for step in instance.get_run_step_stats(run.run_id):
            stage = STEP_STAGE.get(step.step_key)
            if stage and step.start_time and step.end_time:
                windows[stage].append((step.start_time, step.end_time))
                if stage == "report" and step.status == StepEventStatus.SUCCESS:
                    report_end = step.end_time
    return windows, report_end


def measure(flavour: str, patients: int, seed: int) -> dict[str, object]:
    data = cohort(flavour, patients, seed)
    lines = sum(sum(1 for _ in p.open("rb")) for p in data.glob("*/*.ndjson"))
    native = baseline(data)
    for stale in ("warehouse", "report"):
        shutil.rmtree(data / stale, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        started, wall, sampler, _out = run_pipeline(data, home)
        windows, report_end = stage_windows(home)
        _, reload_wall, _reload, reload_out = run_pipeline(data, home)
    stages: dict[str, dict[str, float]] = {}
    for stage in STAGES:
        spans = windows[stage]
        seconds = sum(end - start for start, end in spans)
        peak = max((sampler.peak_mb(s, e) for s, e in spans), default=0)
        stages[stage] = {
            "seconds": round(seconds, 2),
            "peak_mb": peak,
            "ratio": round(native["seconds"] / seconds, 3) if seconds else 0.0,
        }
    steps = sum(s["seconds"] for s in stages.values())
    if report_end is None:
        raise SystemExit("the run wrote no report: no time to the report to measure")
    until_report = report_end - started
    return {
        "flavour": flavour,
        "patients": patients,
        "lines": lines,
        "ndjson_mb": round(sum(p.stat().st_size for p in data.glob("*/*.ndjson")) / 2**20),
        "baseline": native,
        "stages": stages,
        "orchestration_seconds": round(wall - steps, 2),
        "to_report_seconds": round(until_report, 2),
        "to_report_ratio": round(native["seconds"] / until_report, 3),
        # the measure before the asset checks ran after the report: wall time less validation
        "wall_less_validation_seconds": round(wall - stages["validation"]["seconds"], 2),
        "whole_seconds": round(wall, 2),
        "whole_ratio": round(native["seconds"] / wall, 3),
        "whole_peak_mb": sampler.peak_mb(),
        "unchanged_reload_seconds": round(reload_wall, 2),
        "unchanged_share": round(reload_wall / wall, 3),
        "unchanged_said": "Nothing new since the last publish" in reload_out,
    }


def median_run(runs: list[dict[str, object]]) -> dict[str, object]:
    """The run whose ratio to the report is the median of `runs` (the lower middle one of an
    even number), with every run's ratio and seconds to the report beside it."""
    ranked = sorted(runs, key=lambda r: float(r["to_report_ratio"]))  # type: ignore[arg-type]
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["repeats"] = [
        {"to_report_seconds": r["to_report_seconds"], "to_report_ratio": r["to_report_ratio"]}
        for r in runs
    ]
    return chosen


def table(results: list[dict[str, object]]) -> str:
    head = (
        "| cohort | DuckDB bare landing | "
        + " | ".join(STAGES)
        + (" | orchestration | to the report | whole run | peak RSS | unchanged reload |")
    )
    rows = [head, "|" + "---|" * (len(STAGES) + 7)]
    for r in results:
        stages = r["stages"]
        assert isinstance(stages, dict)
        base = r["baseline"]
        assert isinstance(base, dict)
        cells = [
            f"{r['flavour']} {r['patients']:,} ({r['lines']:,} lines)",
            f"{base['seconds']:.1f} s",
            *(
                f"{stages[s]['seconds']:.1f} s ({stages[s]['ratio']:.2f}x, "
                f"{stages[s]['peak_mb']:,} MB)"
                for s in STAGES
            ),
            f"{r['orchestration_seconds']:.1f} s",
            f"{r['to_report_seconds']:.1f} s ({r['to_report_ratio']:.3f}x)",
            f"{r['whole_seconds']:.1f} s ({r['whole_ratio']:.3f}x)",
            f"{r['whole_peak_mb']:,} MB",
            f"{r['unchanged_reload_seconds']:.1f} s ({float(str(r['unchanged_share'])):.1%})",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", help="patients, comma-separated")
    parser.add_argument("--flavours", default="clean,faulty", help="clean, faulty or both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each cohort this many times (baseline and run each time) and keep the "
        "run with the median ratio to the report: on a shared machine one run can be 15 %% off",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    OUT.mkdir(parents=True, exist_ok=True)
    # The package byte-compiled, as an installed one is (pip compiles a wheel's modules; an
    # editable install compiles them at first import, unless PYTHONDONTWRITEBYTECODE is set,
    # as on some build machines: then every process would compile ~150 modules again).
    package = Path(__file__).resolve().parents[1] / "rescue_pipeline"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    # The first process to import the libraries reads them from disk; the others from the
    # page cache. A throwaway import first, so the first cohort is not the one that pays.
    subprocess.run(
        [sys.executable, "-c", "import dagster, duckdb, great_expectations, rescue_pipeline.cli"],
        check=True,
        capture_output=True,
    )
    results = []
    for patients in (int(s) for s in args.sizes.split(",")):
        for flavour in args.flavours.split(","):
            started = time.perf_counter()
            result = median_run([measure(flavour, patients, args.seed) for _ in range(args.repeat)])
            results.append(result)
            print(
                f"{flavour} {patients:,}: whole {result['whole_seconds']} s, "
                f"to the report {result['to_report_seconds']} s "
                f"(measured in {time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
    name = OUT / f"pipeline-{args.sizes.replace(',', '-')}-{args.flavours.replace(',', '-')}.json"
    name.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\n(written to {name})")


if __name__ == "__main__":
    main()
