"""The sponsors' report opened in a real headless browser (Debian's chromium, driven by
Playwright): every page loads from disk with no console error, every plot renders, every link
leads to a page that exists. A screenshot of each kind of page is kept as a test artefact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs the pipeline end to end (.ci/run)

CHROMIUM = Path(os.environ.get("RESCUE_CHROMIUM", "/usr/bin/chromium"))
ARTEFACTS = Path(os.environ.get("RESCUE_ARTEFACTS", Path(__file__).parents[2] / "test-artefacts"))
# The machine's network is closed: keep Chromium from trying to reach Google at start.
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() or not _has_playwright():
        if os.environ.get("RESCUE_CHROMIUM"):  # .ci/run sets it: there the test must run
            pytest.fail(f"RESCUE_CHROMIUM={CHROMIUM}: chromium or playwright is missing")
        pytest.skip("chromium or playwright not installed (.ci/run installs both)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


def test_every_page_opens_from_disk_with_no_error_and_its_plots_render(browser, reported) -> None:
    _config, _truth, files = reported
    pages = sorted(files.sponsors.glob("*.html"))
    assert len(pages) == 1 + 3 + 14  # overview, a page per site, a page per suite
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed to load {r.url}"))
    for path in pages:
        page.goto(path.as_uri(), wait_until="load")
        assert page.title().endswith("RESCUE data quality"), path.name
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])"
        )
        for src, complete, width in images:
            assert complete and width > 0, f"{path.name}: plot {src} did not render"
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        for href in links:
            assert href.startswith("file://"), f"{path.name}: link off the report {href}"
            assert Path(href.removeprefix("file://")).exists(), f"{path.name}: dead link {href}"
        if path.name in ("index.html", "site-site-a.html", "suite-analysis-adtte.html"):
            page.screenshot(path=str(ARTEFACTS / f"report-{path.stem}.png"), full_page=True)
    assert problems == []
    overview = pages[[p.name for p in pages].index("index.html")]
    page.goto(overview.as_uri())
    assert page.locator("#sites tbody tr").count() == 3
    figures = page.eval_on_selector_all(
        "figure img",
        "els => els.map(e => [e.getAttribute('alt'), e.naturalWidth, e.naturalHeight])",
    )
    assert len(figures) == 4  # flow, enrolment, key risk indicators, completeness heatmap
    for alt, width, height in figures:
        assert alt and width > 300 and height > 150, alt  # a real figure, with its alt text
    lines = page.eval_on_selector_all("#sites a", "els => els.map(e => e.getClientRects().length)")
    assert lines and set(lines) == {1}  # a site link never wraps ("site-" / "a")
    page.click('#sites a:text-is("site-b")')
    assert page.url.endswith("site-site-b.html")
    assert page.locator("h1").inner_text() == "Site site-b"
    assert (ARTEFACTS / "report-index.png").stat().st_size > 10_000


def test_define_html_opens_with_no_error_and_every_link_resolves(browser, reported, tmp_path):
    """The reviewers' rendering of define.xml, from the published warehouse's XPT export."""
    from rescue_pipeline.analysis.exports import export
    from rescue_pipeline.warehouse import sandbox

    config, _truth, _files = reported
    with sandbox.connect(config.warehouse) as con:
        result = export(con, study_id=config.study_id, nct_id=config.nct_id, fmt="xpt",
                        out=tmp_path / "xpt")  # fmt: skip
    assert result.define_html is not None
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(result.define_html.as_uri(), wait_until="load")
    assert page.title().startswith("Define")
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
        if href.startswith("#"):
            assert page.locator(f"[id='{href[1:]}']").count() == 1, f"dead anchor {href}"
        else:
            assert (result.out / href).exists(), f"dead link {href}"
    for table in page.locator("table").all():  # no empty table
        assert table.locator("tbody tr").count() > 0
    assert page.locator("[id='ADTTE.SRCFTYP']").count() == 1
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "define.png"), full_page=False)
    assert problems == []
