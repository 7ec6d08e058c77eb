"""The expectation suites as a page for people: `expectations/README.md` in the repository is
written from the suites the package ships (never a second copy of them).

    python -m rescue_pipeline.quality.suite_docs > expectations/README.md
"""

from __future__ import annotations

import json
import sys

from rescue_pipeline.quality.suites import Suite, load_suites, suites_sha256

HEADER = """# Data-quality checks

Written from the suites in `rescue_pipeline/quality/suites/` (one JSON file per table or concern,
shipped in the package): do not edit by hand; after changing a suite, run
`python -m rescue_pipeline.quality.suite_docs > expectations/README.md` (a test compares them).

Each check has a stable id: it names the check in Dagster, keys its results in
`quality.results.check_id` and `quality.findings.check_id`, and appears in the sponsors'
report. A **critical** check that fails for a site holds that site back (its last published
data stay); one that fails for no single site refuses the publish. A **warning** is reported.
Each run records the suites' sha256 (`quality.results.suites_sha256`).
"""


def _kwargs(kwargs: dict[str, object]) -> str:
    shown = {k: v for k, v in kwargs.items() if k != "column"}
    return ", ".join(f"{k}: {json.dumps(v)}" for k, v in shown.items()) or "-"


def render(suites: list[Suite], digest: str) -> str:
    lines = [HEADER, f"Suites' sha256: `{digest}`", ""]
    for suite in suites:
        lines += [f"## {suite.name} ({suite.layer})", ""]
        lines += [f"Table `{suite.table}`; the rows checked (keyed by `{suite.key}`) come from:"]
        lines += ["", "```sql", suite.query, "```", ""]
        lines += ["| id | severity | column | expectation | settings | what it guards |"]
        lines += ["|---|---|---|---|---|---|"]
        for e in suite.expectations:
            meta = e.get("meta", {})
            kwargs = e.get("kwargs", {})
            cells = [
                f"`{e['id']}`",
                meta.get("severity", "warning"),
                f"`{kwargs.get('column', '')}`",
                e["type"],
                _kwargs(kwargs).replace("|", "\\|"),
                meta.get("description", ""),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(render(load_suites(), suites_sha256()))


if __name__ == "__main__":
    main()
