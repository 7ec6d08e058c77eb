"""Following a FHIR Bundle's next links, page by page, for searches and history reads.

A page that is not JSON or not a Bundle, a next link to another server (our token must not
follow it there) or a loop of next links fails with PageError naming the site and the URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rescue_pipeline.extract.exact_json import loads_exact
from rescue_pipeline.extract.http import FhirHttpClient, redact_url
from rescue_pipeline.extract.ndjson import SourceError


class PageError(SourceError):
    """A page we cannot read as a Bundle: the site's load fails, its marks stay."""


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def with_params(url: str, keep: dict[str, str]) -> str:
    """The next link with the parameters of `keep` it dropped put back (a server that pages
    history by offset, such as sekmet 0.1.1, forgets `_since` in its next links)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {k for k, _ in query}
    missing = [(k, v) for k, v in keep.items() if k not in names]
    if not missing:
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, *missing], safe=":/,|")))


def pages(
    client: FhirHttpClient,
    site_id: str,
    url: str,
    params: dict[str, str],
    *,
    keep: tuple[str, ...] = (),
    max_pages: int | None = None,
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Each page as (URL shown in messages, Bundle, bytes), following next links; `keep` names
    parameters of the first request that every next link must carry too. Past `max_pages`
    pages or `max_seconds` a further next link fails with PageError (a server whose next links
    never end cannot hold a load forever)."""
    base_origin = origin(url)
    started = clock()
    count = 0
    kept = {k: params[k] for k in keep if k in params}
    next_url: str | None = url
    query: dict[str, str] | None = params
    seen: set[str] = set()
    while next_url:
        response = client.get(next_url, params=query)
        shown = redact_url(response.request.url)
        try:  # numbers and repeated keys as sent: the lines landed are what the server said
            page = loads_exact(response.content)
        except (ValueError, RecursionError) as exc:
            reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
            raise PageError(f"site {site_id}: GET {shown}: page is not JSON ({reason})") from None
        if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            found = page.get("resourceType") if isinstance(page, dict) else type(page).__name__
            raise PageError(f"site {site_id}: GET {shown}: page is not a Bundle (got {found!r})")
        yield shown, page, len(response.content)
        count += 1
        next_url, query = None, None
        for link in page.get("link") or ():
            if isinstance(link, dict) and link.get("relation") == "next":
                next_url = str(link.get("url") or "") or None
        if next_url is not None:
            if origin(next_url) != base_origin:  # our token must not follow it elsewhere
                raise PageError(
                    f"site {site_id}: GET {shown}: next link points to another server "
                    f"({redact_url(next_url)})"
                )
            if max_pages is not None and count >= max_pages:
                raise PageError(
                    f"site {site_id}: GET {shown}: still a next link after {count} pages "
                    f"(search_max_pages {max_pages})"
                )
            if max_seconds is not None and clock() - started > max_seconds:
                raise PageError(
                    f"site {site_id}: GET {shown}: still a next link after {max_seconds:g} s "
                    f"(search_max_seconds)"
                )
            next_url = with_params(next_url, kept)
            if next_url in seen:
                raise PageError(f"site {site_id}: GET {shown}: next links loop")
            seen.add(next_url)
