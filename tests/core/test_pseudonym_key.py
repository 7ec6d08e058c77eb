"""A pseudonym key other than the one the subject ids were made with is refused: analysts'
exports, data queries and the published warehouse would otherwise silently name every hashed
subject anew. Re-keying on purpose is one explicit run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rescue_pipeline.core.build import build_core
from rescue_pipeline.core.pseudonym import PseudonymKeyChanged
from rescue_pipeline.site_load import work_db
from tests.cohort import KEY, TODAY, build_cohort


def _ids(con) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(con.execute(
        "SELECT research_subject_id, usubjid FROM core_stage.usubjids "
        "WHERE regexp_matches(usubjid, '-X[0-9a-f]{10}$')"
    ).fetchall())  # fmt: skip


def test_a_changed_key_is_refused_and_re_keying_is_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = build_cohort(tmp_path / "c", patients=60, seed=4)
    other = b"another-key-of-32-characters-xx"
    with work_db(config) as con:
        before = _ids(con)
        assert before  # the cohort has subjects without an RSC identifier
        build_core(con, config, key=KEY, today=TODAY)  # the same key: fine
        assert _ids(con) == before
        monkeypatch.delenv("RESCUE_PSEUDONYM_KEY_CHANGED", raising=False)
        with pytest.raises(PseudonymKeyChanged, match="RESCUE_PSEUDONYM_KEY_CHANGED=yes"):
            build_core(con, config, key=other, today=TODAY)
        assert _ids(con) == before  # nothing changed: the build rolled back
        monkeypatch.setenv("RESCUE_PSEUDONYM_KEY_CHANGED", "yes")
        build_core(con, config, key=other, today=TODAY)
        after = _ids(con)
        assert set(after) == set(before) and not set(after.values()) & set(before.values())
