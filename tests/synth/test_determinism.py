"""Same arguments give the same bytes; patient k does not depend on later patients."""

from __future__ import annotations

from pathlib import Path

import orjson

from rescue_pipeline.synth import generate


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "one", patients=120, sites=3, seed=42)
    generate(tmp_path / "two", patients=120, sites=3, seed=42)
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert one.keys() == two.keys()
    assert "ground_truth.json" in one and "sites.yaml" in one
    for name in one:
        assert one[name] == two[name], name


def test_different_seed_different_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "one", patients=60, sites=3, seed=1)
    generate(tmp_path / "two", patients=60, sites=3, seed=2)
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    for name in ("site-a/Observation.ndjson", "site-a/Patient.ndjson", "ground_truth.json"):
        assert one[name] != two[name], name


def test_patient_k_is_stable_when_the_cohort_grows(tmp_path: Path) -> None:
    generate(tmp_path / "small", patients=70, sites=3, seed=9)
    generate(tmp_path / "large", patients=140, sites=3, seed=9)
    for site in ("site-a", "site-b", "site-c"):
        for ndjson in sorted((tmp_path / "small" / site).glob("*.ndjson")):
            small = ndjson.read_bytes()
            large = (tmp_path / "large" / site / ndjson.name).read_bytes()
            assert large.startswith(small), ndjson
    small_truth = orjson.loads((tmp_path / "small" / "ground_truth.json").read_bytes())
    large_truth = orjson.loads((tmp_path / "large" / "ground_truth.json").read_bytes())
    n = len(small_truth["subjects"])
    assert large_truth["subjects"][:n] == small_truth["subjects"]
    m = len(small_truth["faults"])
    assert large_truth["faults"][:m] == small_truth["faults"]
