"""The FHIR REST search source: per resource type, search what changed since the watermark,
follow the Bundle's next links to the end, write the resources as NDJSON, land them.

Why the watermark is the greatest meta.lastUpdated seen *minus an overlap window*
(`overlap_seconds`, default 300): servers page a search by offset over a result set that keeps
changing while we read it. A resource updated mid-paging moves to the end of the result set
(so a page boundary can skip another resource), and writes committed with a timestamp slightly
older than ones already visible (clock skew, long transactions) would fall behind a mark set
exactly at the greatest lastUpdated. Starting the next search a window earlier re-fetches those;
the repeats cost a little bandwidth and nothing else, because landing deduplicates versions by
content. The mark advances only after the landing commits (watermarks.py).

Deletions come from the type-level history after the search (history.py): recorded in
raw.deletions in the same load, and never a reason for the load to fail.

Search-mode `outcome` entries (OperationOutcome) are warnings from the server, logged, not data.
A page that is not JSON or not a Bundle fails the site's load, naming the site, URL and reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson

from rescue_pipeline.config import FhirSource, SiteConfig
from rescue_pipeline.extract.exact_json import RepeatedKeys, dumps_exact, dumps_for_quarantine
from rescue_pipeline.extract.fetched import Fetched
from rescue_pipeline.extract.history import read_deletions
from rescue_pipeline.extract.http import FhirHttpClient, client_for
from rescue_pipeline.extract.ndjson import SourceFile
from rescue_pipeline.extract.paging import PageError, pages
from rescue_pipeline.extract.paths import file_in
from rescue_pipeline.extract.staging import staging_folder
from rescue_pipeline.extract.watermarks import format_mark, read_marks
from rescue_pipeline.fhir_types import is_r4_resource_type
from rescue_pipeline.instants import utc_instant

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TYPES", "PageError", "TypeExtract", "extract_site", "fetch_fhir_site"]

DEFAULT_TYPES = (
    "Patient",
    "ResearchSubject",
    "Consent",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationAdministration",
    "MedicationRequest",
    "MedicationStatement",
    "Medication",
)


@dataclass
class TypeExtract:
    """What one resource type's search wrote."""

    resource_type: str
    resources: int = 0
    pages: int = 0
    outcomes: int = 0
    latest: dt.datetime | None = None  # greatest meta.lastUpdated among the resources


def _last_updated(resource: dict[str, Any]) -> dt.datetime | None:
    meta = resource.get("meta")
    return utc_instant(meta.get("lastUpdated") if isinstance(meta, dict) else None)


def search_type(
    client: FhirHttpClient,
    site_id: str,
    source: FhirSource,
    resource_type: str,
    since: dt.datetime | None,
    out: Callable[[str], IO[bytes]],
) -> TypeExtract:
    """Search one type; each resource goes to out(its resourceType) as one compact JSON line."""
    params = {"_count": str(source.page_size), **source.search.get(resource_type, {})}
    if since is not None:
        params["_lastUpdated"] = f"gt{format_mark(since)}"
    result = TypeExtract(resource_type)
    url = f"{source.base_url.rstrip('/')}/{resource_type}"
    for shown, page, _size in pages(
        client,
        site_id,
        url,
        params,
        max_pages=source.search_max_pages,
        max_seconds=source.search_max_seconds,
    ):
        result.pages += 1
        if isinstance(page, RepeatedKeys):
            raise PageError(
                f"site {site_id}: GET {shown}: the Bundle repeats a key (entries would be lost)"
            )
        for entry in page.get("entry") or ():
            if isinstance(entry, RepeatedKeys):
                raise PageError(
                    f"site {site_id}: GET {shown}: a Bundle entry repeats a key (a resource "
                    "would be lost)"
                )
            resource = entry.get("resource") if isinstance(entry, dict) else None
            mode = (entry.get("search") or {}).get("mode") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                log.warning("site %s: GET %s: an entry without a resource, skipped", site_id, shown)
                continue
            rtype = resource.get("resourceType")
            if mode == "outcome" or rtype == "OperationOutcome":
                result.outcomes += 1
                texts = [
                    str(i.get("diagnostics") or (i.get("details") or {}).get("text") or "")
                    for i in resource.get("issue") or ()
                    if isinstance(i, dict)
                ]
                log.warning("site %s: GET %s: server says: %s", site_id, shown, "; ".join(texts))
                continue
            # a type that is not R4 names no file: the line goes with the searched type's and
            # is quarantined there (unknown_resource_type), so nothing is lost
            named = rtype if is_r4_resource_type(rtype) else resource_type
            try:
                line = dumps_exact(resource)
            except (TypeError, orjson.JSONEncodeError, RecursionError):
                line = dumps_for_quarantine(resource)  # the landing quarantines it
            out(str(named)).write(line + b"\n")
            if rtype == resource_type:
                result.resources += 1
                updated = _last_updated(resource)
                if updated and (result.latest is None or updated > result.latest):
                    result.latest = updated
    return result


def extract_site(
    client: FhirHttpClient,
    site_id: str,
    source: FhirSource,
    folder: Path,
    marks: dict[str, dt.datetime],
) -> tuple[list[SourceFile], dict[str, TypeExtract]]:
    """Search every configured type into folder/<Type>.ndjson; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, TypeExtract] = {}
    with ExitStack() as stack:
        files: dict[str, IO[bytes]] = {}

        def out(rtype: str) -> IO[bytes]:
            if rtype not in files:
                files[rtype] = stack.enter_context(file_in(folder, f"{rtype}.ndjson").open("wb"))
            return files[rtype]

        for rtype in source.types or DEFAULT_TYPES:
            results[rtype] = search_type(client, site_id, source, rtype, marks.get(rtype), out)
            log.info(
                "site %s: %s: %d resources in %d pages",
                site_id,
                rtype,
                results[rtype].resources,
                results[rtype].pages,
            )
    label = f"rest/{folder.name}"
    written = [
        SourceFile(rtype, folder / f"{rtype}.ndjson", f"{label}/{rtype}.ndjson")
        for rtype in sorted(files)
    ]
    return written, results


@contextmanager
def fetch_fhir_site(
    con: duckdb.DuckDBPyConnection,
    site: SiteConfig,
    load_id: str,
    *,
    work_dir: Path,
    full: bool = False,
    client: FhirHttpClient | None = None,
) -> Iterator[Fetched]:
    """Search a kind: fhir site into <work_dir>/extract/<site>/<load_id>/ (and read its
    deletions from history), proposing the watermarks the landing advances. `full` ignores the
    watermarks (the landing still advances them)."""
    source = site.source
    if not isinstance(source, FhirSource):
        raise TypeError(f"site {site.id}: not a kind: fhir source")
    marks = {} if full else read_marks(con, site.id)
    overlap = dt.timedelta(seconds=source.overlap_seconds)
    with ExitStack() as stack:
        folder = stack.enter_context(
            staging_folder(work_dir, site.id, load_id, keep_days=source.keep_extract_days)
        )
        if client is None:
            client = stack.enter_context(client_for(site.id, source))
        client.limit_total(source.load_max_seconds, "load_max_seconds")
        files, results = extract_site(client, site.id, source, folder, marks)
        new_marks = {t: r.latest - overlap for t, r in results.items() if r.latest is not None}
        history = read_deletions(
            client,
            site.id,
            source,
            folder,
            search_marks=marks,
            deletion_marks={} if full else read_marks(con, site.id, of="deletions"),
            new_search_marks=new_marks,
            full=full,
            types=tuple(source.types or DEFAULT_TYPES),
        )
        yield Fetched(files, history.files, marks=new_marks, deletion_marks=history.marks)
