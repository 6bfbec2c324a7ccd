"""Open a report in a real headless browser: the system's Chromium (Debian's `chromium`, from
scripts/system-deps.sh) driven by Playwright for Python over its own driver; no browser download
(`playwright install` is never run). Records what a reader's browser would complain about: console
messages, uncaught page errors, every request other than the file itself (a report needs no other
file; network requests are also blocked), failed loads and broken images, and lays out every `<figure id="plot-...">`.

Also the README's screenshot: `python -m tests.browser --out docs/report-example.png` renders the
synthetic example report (tests/report_samples.py) and keeps a PNG of it."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

VIEWPORT_WIDTH = 1200
# a screenshot ends below the last figure (the metrics table after it repeats the numbers above) and at
# most this tall, so the PNG stays a few hundred KB
SCREENSHOT_HEIGHT = 5000


def chromium_path() -> str | None:
    """EDGEVLM_CHROMIUM, else `chromium` (Debian) or `chromium-browser` (Ubuntu) on PATH."""
    return os.environ.get("EDGEVLM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def why_no_browser() -> str | None:
    """None when a browser can be driven here, else the reason (a test skips with it)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        return "no chromium on PATH (scripts/system-deps.sh installs Debian's chromium; EDGEVLM_CHROMIUM names another)"
    return None


@dataclass
class PageLoad:
    url: str
    console: list[tuple[str, str]] = field(default_factory=list)   # (type, text), every message
    page_errors: list[str] = field(default_factory=list)           # uncaught exceptions
    other_requests: list[str] = field(default_factory=list)        # anything but the file: blocked
    failed_requests: list[tuple[str, str]] = field(default_factory=list)  # (url, failure)
    broken_images: list[str] = field(default_factory=list)         # <img> with no decoded pixels
    figures: dict[str, dict] = field(default_factory=dict)         # plot id -> {svg: bbox or None}
    text: str = ""                                                 # document.body.innerText


def load(html: Path, *, screenshot: Path | None = None, width: int = VIEWPORT_WIDTH,
         height: int | None = SCREENSHOT_HEIGHT) -> PageLoad:
    """Open HTML in headless Chromium and record what happened; with SCREENSHOT, also keep a PNG of
    the page WIDTH wide, from the top to below its last figure (at most HEIGHT)."""
    from playwright.sync_api import sync_playwright

    url = html.resolve().as_uri()
    result = PageLoad(url)

    def route(r):
        if r.request.url != url:  # the report must stand alone: any other request is recorded
            result.other_requests.append(r.request.url)
            if not r.request.url.startswith("file:"):  # and the network never reached
                r.abort("blockedbyclient")
                return
        r.continue_()  # a local file loads, or fails, as it would for a reader

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path())
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", route)
            page.on("console", lambda m: result.console.append((m.type, m.text)))
            page.on("pageerror", lambda e: result.page_errors.append(str(e)))
            page.on("requestfailed", lambda r: result.failed_requests.append((r.url, r.failure or "")))
            page.goto(url, wait_until="load")
            result.broken_images = page.eval_on_selector_all(
                "img", "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
            for fig in page.query_selector_all("figure[id^='plot-']"):
                svg = fig.query_selector("svg")
                result.figures[fig.get_attribute("id")] = {"svg": svg.bounding_box() if svg else None}
            result.text = page.inner_text("body")
            if screenshot is not None:
                end = page.evaluate("""() => {
                    const figs = document.querySelectorAll("figure[id^='plot-']");
                    return figs.length ? figs[figs.length - 1].getBoundingClientRect().bottom + window.scrollY + 16
                                       : document.documentElement.scrollHeight; }""")
                clip = {"x": 0, "y": 0, "width": width, "height": min(round(end), height or round(end))}
                page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()
    return result


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; ValueError when the file is not a PNG."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="screenshot of the synthetic example report")
    parser.add_argument("--out", type=Path, default=Path("docs/report-example.png"))
    args = parser.parse_args(argv)
    reason = why_no_browser()
    if reason:
        parser.error(reason)
    from tests.report_samples import example_report

    with tempfile.TemporaryDirectory() as tmp:
        page = load(example_report(Path(tmp)), screenshot=args.out)
    problems = page.console + page.page_errors + page.other_requests + page.failed_requests + page.broken_images
    if problems:  # a screenshot of a page that did not render cleanly is no example
        print(f"the example report did not render cleanly: {problems}")
        return 1
    print(f"{args.out}: {'x'.join(map(str, png_size(args.out)))} px, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
