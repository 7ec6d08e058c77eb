"""A run whose inputs are those of the last publish rebuilds nothing; any input that changes a
result (a new version, a quarantined line, a deletion, a concept map, a rule setting, the
cut-off, the key, the code) makes it rebuild."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from rescue_pipeline import inputs
from rescue_pipeline.config import ConceptMapping, load_config
from rescue_pipeline.extract.ndjson import discover
from rescue_pipeline.raw.landing import land_files, new_load_id
from rescue_pipeline.site_load import (
    build_core_layer,
    check_quality,
    derive_analysis_layer,
    load_site,
    publish_warehouse,
    work_db,
)
from rescue_pipeline.synth import generate
from tests.conftest import line, obs

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

KEY = "unchanged-test-key-0123456789"
CUTOFF = dt.date(2026, 6, 30)


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small cohort landed, derived and published once; its sites.yaml."""
    monkeypatch.setenv("RESCUE_PSEUDONYM_KEY", KEY)
    generate(tmp_path / "c", patients=40, sites=2, seed=9, fault_rate=0.05)
    path = tmp_path / "c" / "sites.yaml"
    config = load_config(path)
    for site in config.sites:
        load_site(config, site)
    _derive_and_publish(path)
    return path


def _derive_and_publish(path: Path) -> bool:
    """Core to report as a run does it; whether the core was rebuilt."""
    from rescue_pipeline.report.render import write_report

    config = load_config(path)
    core = build_core_layer(config)
    if core.unchanged:
        return False
    derive_analysis_layer(config)
    quality = check_quality(config)
    publish_warehouse(config, quality)
    write_report(config.warehouse, config.report_dir, study_id=config.study_id,
                 site_ids=[s.id for s in config.sites])  # fmt: skip
    return True


def _fingerprint(path: Path, *, key: str = KEY, cutoff: dt.date = CUTOFF) -> str:
    config = load_config(path)
    with work_db(config, read_only=True) as con:
        return inputs.fingerprint(con, config, key=key.encode(), cutoff=cutoff)


def test_a_reload_of_the_same_files_rebuilds_nothing(published: Path) -> None:
    config = load_config(published)
    warehouse = config.warehouse.stat()
    for site in config.sites:
        result = load_site(config, site)
        assert result.files_unchanged > 0 and result.total().new_versions == 0
    assert _derive_and_publish(published) is False
    after = config.warehouse.stat()
    assert (after.st_ino, after.st_mtime_ns) == (warehouse.st_ino, warehouse.st_mtime_ns)
    with work_db(config, read_only=True) as con:
        rows = con.execute("SELECT count(*), count(published_at) FROM ops.derivations").fetchall()
    assert rows == [(1, 1)]  # one build, published; the second run recorded nothing


def test_a_full_reload_that_reads_only_known_versions_rebuilds_nothing(published: Path) -> None:
    config = load_config(published)
    for site in config.sites:
        assert load_site(config, site, full=True).total().received > 0  # read again
    assert _derive_and_publish(published) is False


def test_a_missing_warehouse_or_report_is_rebuilt(published: Path) -> None:
    config = load_config(published)
    config.report_index.unlink()
    assert _derive_and_publish(published) is True
    config.warehouse.unlink()
    assert _derive_and_publish(published) is True
    assert config.warehouse.exists() and config.report_index.exists()


def test_an_unpublished_build_is_rebuilt(published: Path) -> None:
    """A build whose publish never happened (refused, failed, killed) is not what analysts see:
    the next run builds again."""
    config = load_config(published)
    with work_db(config) as con:
        con.execute("UPDATE ops.derivations SET published_at = NULL")
    assert _derive_and_publish(published) is True


def test_every_input_that_shapes_a_result_changes_the_fingerprint(
    published: Path, tmp_path: Path
) -> None:
    base = _fingerprint(published)
    assert _fingerprint(published) == base  # deterministic
    assert _fingerprint(published, key=KEY + "x") != base
    assert _fingerprint(published, cutoff=CUTOFF + dt.timedelta(days=1)) != base

    data = yaml.safe_load(published.read_text())
    data["analysis"]["assessment_window_days"] = 21
    shutil.copy(published, published.with_name("orig.yaml"))
    published.write_text(yaml.safe_dump(data))
    assert _fingerprint(published) != base
    shutil.copy(published.with_name("orig.yaml"), published)

    config = load_config(published)
    mapped = dataclasses.replace(
        config.sites[0],
        concept_map=(*config.sites[0].concept_map, ConceptMapping("s", "c", "t", "c2")),
    )
    remapped = dataclasses.replace(config, sites=(mapped, *config.sites[1:]))
    other_trial = dataclasses.replace(config, nct_id="NCT00000001")  # who is a trial subject
    with work_db(config, read_only=True) as con:
        assert inputs.fingerprint(con, remapped, key=KEY.encode(), cutoff=CUTOFF) != base
        assert inputs.fingerprint(con, other_trial, key=KEY.encode(), cutoff=CUTOFF) != base


def test_any_change_to_the_code_or_the_suites_changes_the_code_fingerprint(
    tmp_path: Path,
) -> None:
    package = tmp_path / "package"
    shutil.copytree(inputs.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = inputs.code_fingerprint(package)
    assert before == inputs.code_fingerprint(inputs.PACKAGE)  # the same files, the same digest
    suite = package / "quality" / "suites" / "raw.loads.json"
    suite.write_text(suite.read_text().replace("received", "received "))
    assert inputs.code_fingerprint.__wrapped__(package) != before  # type: ignore[attr-defined]


@pytest.mark.parametrize("what", ["new version", "quarantined line", "deletion"])
def test_anything_new_landed_changes_the_fingerprint(
    published: Path, tmp_path: Path, write_site, what: str
) -> None:
    base = _fingerprint(published)
    config = load_config(published)
    if what == "deletion":
        with work_db(config) as con:
            con.execute(
                "INSERT INTO raw.deletions SELECT site_id, resource_type, resource_id, now(), "
                "'received', NULL, 'test', 1, 0, '{}', repeat('0', 64), 'L-new', now() "
                "FROM raw.fhir_resource_versions LIMIT 1"
            )
    else:
        body = line(obs("brand-new")) if what == "new version" else b"{not json"
        folder = write_site("site-a", {"Observation": [body]})
        with work_db(config) as con:
            land_files(con, "site-a", discover(folder, "site-a"), load_id=new_load_id("site-a"))
    assert _fingerprint(published) != base
