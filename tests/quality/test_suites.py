"""The suites ship in the package, each expectation with a stable id; the page for people is
written from them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from rescue_pipeline.quality import suite_docs
from rescue_pipeline.quality.suites import SuiteError, load_suites, suites_folder, suites_sha256

ROOT = Path(__file__).resolve().parents[2]


def test_the_suites_are_in_the_package_each_expectation_with_its_own_id() -> None:
    assert suites_folder().parent.name == "quality" and suites_folder().name == "suites"
    ids = [e["id"] for suite in load_suites() for e in suite.expectations]
    assert len(ids) == len(set(ids)) >= 30
    assert all(re.fullmatch(r"[a-z][a-z0-9_]{2,62}", i) for i in ids)
    assert "ca125_units_known" in ids


@pytest.mark.parametrize(
    ("ids", "message"),
    [(["ok_one", "ok_one"], "used twice"), (["ok_one", None], "has no id"), (["Bad-Id"], "no id")],
)
def test_a_suite_without_an_id_or_with_one_twice_is_refused(
    tmp_path: Path, ids: list[str | None], message: str
) -> None:
    expectations = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}}
        | ({"id": i} if i else {})
        for i in ids
    ]
    doc = {"name": "t", "meta": {"layer": "core", "table": "core.t", "query": "SELECT 1",
                                 "key": "x"}, "expectations": expectations}  # fmt: skip
    (tmp_path / "t.json").write_text(json.dumps(doc))
    with pytest.raises(SuiteError, match=message):
        load_suites(tmp_path)


def test_the_suites_hash_changes_with_any_suite(tmp_path: Path) -> None:
    copy = tmp_path / "suites"
    shutil.copytree(suites_folder(), copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert suites_sha256(copy) == suites_sha256()
    path = copy / "core.surgeries.json"
    path.write_text(path.read_text().replace("R0", "R0 "))
    assert suites_sha256(copy) != suites_sha256()


def test_the_page_for_people_is_written_from_the_shipped_suites() -> None:
    page = (ROOT / "expectations" / "README.md").read_text()
    assert page == suite_docs.render(load_suites(), suites_sha256()), (
        "expectations/README.md is stale: "
        "python -m rescue_pipeline.quality.suite_docs > expectations/README.md"
    )
    assert not list((ROOT / "expectations").glob("*.json"))  # no second copy of a suite
