"""Compare a built warehouse with `rescue synth`'s ground truth, per real-site class.

    python bench/truth_mismatches.py COHORT_DIR WORK_DB

Prints, for each class of `ground_truth.json` subjects' `classes` (and each scenario), how many
subjects it has and how many differ from the truth in any eligibility criterion, the summary or
PFS. Used to measure what a rule change fixes: run it on the same cohort before and after.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import duckdb


def main(cohort: Path, work_db: Path) -> None:
    truth = json.loads((cohort / "ground_truth.json").read_text())
    con = duckdb.connect(str(work_db), read_only=True)
    ids = dict(con.execute("SELECT source_id, usubjid FROM core.subjects").fetchall())
    crit: dict[str, dict[str, str]] = defaultdict(dict)
    rows = con.execute("SELECT usubjid, criterion, status FROM analysis.eligibility").fetchall()
    for u, c, s in rows:
        crit[u][c] = s
    summary = dict(
        con.execute("SELECT usubjid, eligible FROM analysis.eligibility_summary").fetchall()
    )
    pfs = {
        u: (adt, cnsr)
        for u, adt, cnsr in con.execute(
            "SELECT USUBJID, ADT::VARCHAR, CNSR FROM analysis.adtte WHERE PARAMCD = 'PFS'"
        ).fetchall()
    }
    total: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for s in truth["subjects"]:
        u = ids.get(s["research_subject_id"])
        bad = u is None
        if u is not None:
            bad = any(crit[u].get(k) != v["status"] for k, v in s["eligibility"].items())
            bad = bad or summary.get(u) != s["eligible"]
            if s["pfs"] is not None:
                bad = bad or pfs.get(u) != (s["pfs"]["adt"], s["pfs"]["cnsr"])
        groups = ["all", "scenario:" + s["scenario"].split("/")[0], *s.get("classes", [])]
        for g in groups:
            total[g] += 1
            wrong[g] += bad
    print(f"{'group':45} {'subjects':>8} {'differ':>7}")
    for g in sorted(total, key=lambda g: (g != "all", g.startswith("scenario:"), g)):
        print(f"{g:45} {total[g]:8} {wrong[g]:7}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
