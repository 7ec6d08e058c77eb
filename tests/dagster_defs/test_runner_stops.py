"""What the command says when a stop signal meets the replay: the asset checks come after the
publish and the report, so a stop among them leaves both done."""

from __future__ import annotations

import pytest

from rescue_pipeline.dagster_defs.keys import PUBLISHED, QUALITY, REPORT
from rescue_pipeline.dagster_defs.runner import replay_stopped


@pytest.mark.parametrize(
    ("done", "published", "reported", "where"),
    [
        ({QUALITY}, False, False, "during core, analysis, quality or publish"),
        ({QUALITY, PUBLISHED}, True, False, "after the publish, while the report was written"),
        (
            {QUALITY, PUBLISHED, REPORT},
            True,
            True,
            "after the publish and the report, during the asset checks",
        ),
    ],
)
def test_a_stop_in_the_replay_says_what_was_published_and_reported(
    done: set, published: bool, reported: bool, where: str
) -> None:
    stop = replay_stopped(done)
    assert (stop.published, stop.report_written) == (published, reported)
    assert str(stop).endswith(where)
