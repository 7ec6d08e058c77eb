"""Land what extracting a site fetched: its files, its deletions, then the watermarks and the
source's own records (a Bulk job finished), only once the landing has committed.

Every source kind reaches the raw layer through here, so a REST search, a Bulk export and an
NDJSON folder are landed, counted and re-read (`reread`, a full reload) the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from rescue_pipeline.extract.fetched import Fetched
from rescue_pipeline.extract.watermarks import advance_marks
from rescue_pipeline.raw.deletions import land_deletions
from rescue_pipeline.raw.landing import LoadResult, land_files
from rescue_pipeline.warehouse.database import transaction


def land_fetched(
    con: duckdb.DuckDBPyConnection,
    site_id: str,
    fetched: Fetched,
    *,
    load_id: str,
    reread: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    result = land_files(
        con, site_id, fetched.files, load_id=load_id, reread=reread, progress=progress
    )
    result.deletions = land_deletions(con, site_id, fetched.deleted, load_id=load_id, reread=reread)
    with transaction(con):  # the marks move only with the landing committed
        advance_marks(con, site_id, fetched.marks, load_id=load_id)
        advance_marks(con, site_id, fetched.deletion_marks, load_id=load_id, of="deletions")
        if fetched.on_landed is not None:
            fetched.on_landed(con, load_id)
    if fetched.after_landed is not None:
        fetched.after_landed(result.total().received, result.deletions.total().received)
    return result
