"""`edgevlm report`'s HTML in a real headless browser (Debian's Chromium through Playwright, see
tests/browser.py): the synthetic phone report against a baseline renders with a clean console, no page
error, no request beyond the file itself, every figure laid out at a non-zero size and its key numbers
visible as text. A copy with a missing image or a script error is caught, so the check can
fail. The committed README screenshot is a PNG of the expected width."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from edgevlm.reports.plots import FIGURES
from edgevlm.reports.text import fmt_value
from tests.browser import SCREENSHOT_HEIGHT, VIEWPORT_WIDTH, load, png_size, why_no_browser
from tests.report_samples import example_report

ROOT = Path(__file__).resolve().parents[1]
ONE_PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
needs_browser = pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return example_report(tmp_path_factory.mktemp("report-browser"))


def _clean(page) -> list:
    """Everything a reader's browser would have complained about (empty when the page is fine)."""
    return page.console + page.page_errors + page.other_requests + page.failed_requests + page.broken_images


@needs_browser
def test_the_report_renders_cleanly_in_chromium(example, tmp_path):
    doc = json.loads((example.parent / "report.json").read_text())
    assert doc["baseline"]["comparisons"], "the example must show the comparison table"
    page = load(example, screenshot=tmp_path / "page.png")
    # console covers warnings and info too: a report has no script, so any message is a problem
    assert _clean(page) == []
    # every figure the report defines is on the page (the example plots them all), each an SVG the
    # browser laid out at a real size
    assert set(page.figures) == {f"plot-{fid}" for fid, _ in FIGURES}
    assert all(f["plotted"] for f in doc["figures"])
    for fig_id, box in page.figures.items():
        assert box["svg"] and box["svg"]["width"] > 100 and box["svg"]["height"] > 100, (fig_id, box)
    # the key numbers are visible text (innerText leaves out what is hidden), not just in the source
    assert "pass" in page.text and "Against the baseline" in page.text
    for m in doc["metrics"]:
        if m["value"] is not None:
            assert fmt_value(m["value"], m["unit"]) in page.text, m["id"]
        else:
            assert f"n/a ({m['unavailable']})" in page.text, m["id"]
    for c in doc["baseline"]["comparisons"]:
        assert c["metric"] in page.text and c["verdict"] in page.text
    # the screenshot path the README's PNG is made with: a PNG of the viewport's width, no pixel compare
    width, height = png_size(tmp_path / "page.png")
    assert width == VIEWPORT_WIDTH and 1000 < height <= SCREENSHOT_HEIGHT


@needs_browser
@pytest.mark.parametrize("broken, caught", [
    # a file the report does not ship: the browser's own load failure, a broken image, a console error
    ('<img src="missing.png" alt="">', {"failed_requests": "ERR_FILE_NOT_FOUND", "broken_images": "missing.png",
                                        "console": "Failed to load resource", "other_requests": "missing.png"}),
    # a file next to it that loads fine: still a report that is not self-contained
    ('<img src="side.png" alt="">', {"other_requests": "side.png"}),
    ('<img src="https://example.com/x.png" alt="">', {"other_requests": "https://example.com/x.png",
                                                      "failed_requests": "BLOCKED_BY_CLIENT",
                                                      "broken_images": "example.com", "console": "Failed to load"}),
    ("<script>undefinedFunction()</script>", {"page_errors": "undefinedFunction is not defined"}),
    ("<script>console.warn('stray warning')</script>", {"console": "stray warning"}),
])
def test_a_broken_copy_is_caught(example, tmp_path, broken, caught):
    copy = tmp_path / "report.html"
    copy.write_text(example.read_text().replace("</body>", broken + "</body>"))
    (tmp_path / "side.png").write_bytes(base64.b64decode(ONE_PIXEL_PNG))
    page = load(copy)
    for name, expected in caught.items():
        assert expected in repr(getattr(page, name)), (name, page)
    # and nothing else: each injected fault shows where it should, not as collateral
    assert [n for n in ("console", "page_errors", "other_requests", "failed_requests", "broken_images")
            if getattr(page, n) and n not in caught] == []


def test_the_readme_screenshot_is_committed_and_referenced():
    png = ROOT / "docs" / "report-example.png"
    width, height = png_size(png)
    assert width == VIEWPORT_WIDTH and 1000 < height <= SCREENSHOT_HEIGHT
    assert png.stat().st_size < 500_000
    assert "docs/report-example.png" in (ROOT / "README.md").read_text()
