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

Search-mode `outcome` entries (OperationOutcome) are warnings from the server, logged, not data.
A page that is not JSON or not a Bundle fails the site's load, naming the site, URL and reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import duckdb
import orjson

from rescue_pipeline.config import FhirSource, SiteConfig
from rescue_pipeline.extract.http import FhirHttpClient, client_for, redact_url
from rescue_pipeline.extract.ndjson import SourceError, SourceFile
from rescue_pipeline.extract.watermarks import advance_marks, format_mark, read_marks
from rescue_pipeline.raw.landing import LoadResult, land_files

log = logging.getLogger(__name__)

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


class PageError(SourceError):
    """A search page we cannot read as a Bundle: the site's load fails, its marks stay."""


@dataclass
class TypeExtract:
    """What one resource type's search wrote."""

    resource_type: str
    resources: int = 0
    pages: int = 0
    outcomes: int = 0
    latest: dt.datetime | None = None  # greatest meta.lastUpdated among the resources


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _last_updated(resource: dict[str, Any]) -> dt.datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else None


def _pages(
    client: FhirHttpClient, site_id: str, url: str, params: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each page of a search as (URL shown in messages, Bundle), following next links."""
    base_origin = _origin(url)
    next_url: str | None = url
    query: dict[str, str] | None = params
    seen: set[str] = set()
    while next_url:
        response = client.get(next_url, params=query)
        shown = redact_url(response.request.url)
        try:
            page = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise PageError(f"site {site_id}: GET {shown}: page is not JSON ({exc})") from None
        if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            found = page.get("resourceType") if isinstance(page, dict) else type(page).__name__
            raise PageError(f"site {site_id}: GET {shown}: page is not a Bundle (got {found!r})")
        yield shown, page
        next_url, query = None, None
        for link in page.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == "next":
                next_url = str(link.get("url") or "") or None
        if next_url is not None:
            if _origin(next_url) != base_origin:  # our token must not follow it elsewhere
                raise PageError(
                    f"site {site_id}: GET {shown}: next link points to another server "
                    f"({redact_url(next_url)})"
                )
            if next_url in seen:
                raise PageError(f"site {site_id}: GET {shown}: next links loop")
            seen.add(next_url)


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
    for shown, page in _pages(client, site_id, url, params):
        result.pages += 1
        for entry in page.get("entry") or ():
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
            out(str(rtype or resource_type)).write(orjson.dumps(resource) + b"\n")
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
                files[rtype] = stack.enter_context((folder / f"{rtype}.ndjson").open("wb"))
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


def load_fhir_site(
    con: duckdb.DuckDBPyConnection,
    site: SiteConfig,
    load_id: str,
    *,
    work_dir: Path,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
    client: FhirHttpClient | None = None,
) -> LoadResult:
    """Extract a kind: fhir site into <work_dir>/extract/<site>/<load_id>/, land it, then advance
    its watermarks. `full` ignores the watermarks (and still advances them afterwards)."""
    source = site.source
    if not isinstance(source, FhirSource):
        raise TypeError(f"site {site.id}: not a kind: fhir source")
    marks = {} if full else read_marks(con, site.id)
    folder = work_dir / "extract" / site.id / load_id
    with ExitStack() as stack:
        if client is None:
            client = stack.enter_context(client_for(site.id, source))
        files, results = extract_site(client, site.id, source, folder, marks)
    result = land_files(con, site.id, files, load_id=load_id, reread=full, progress=progress)
    overlap = dt.timedelta(seconds=source.overlap_seconds)
    advance_marks(
        con,
        site.id,
        {t: r.latest - overlap for t, r in results.items() if r.latest is not None},
        load_id=load_id,
    )
    return result
