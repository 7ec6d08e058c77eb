"""What extracting a site hands to the landing: the files it fetched and what to record once
they are landed.

Extract fetches, the site's load lands: every source kind (an NDJSON folder, a FHIR REST search,
a Bulk Data export) yields a `Fetched` from a context manager that keeps its staged files until
the landing is done. The watermarks it proposes (and a Bulk export's completion) are recorded
only after the landing and the deletions have committed, so a load that fails to land fetches
the same data again next time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

from rescue_pipeline.extract.ndjson import DeletionFile, SourceFile


@dataclass
class Fetched:
    files: list[SourceFile]
    deleted: list[DeletionFile] = field(default_factory=list)
    # resource type → the search watermark to advance to once landed
    marks: dict[str, dt.datetime] = field(default_factory=dict)
    # resource type → the deletion (history) watermark to advance to once landed
    deletion_marks: dict[str, dt.datetime] = field(default_factory=dict)
    # what else the source records in the landing's transaction (a Bulk job finished), given
    # the connection and the load id
    on_landed: Callable[[duckdb.DuckDBPyConnection, str], None] | None = None
    # after the landing committed (a Bulk job's files forgotten, a log line), given the
    # resources and the deletions received
    after_landed: Callable[[int, int], None] | None = None
