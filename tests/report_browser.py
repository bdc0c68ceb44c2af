"""Open a page in headless Chromium as a reader would, and say what the browser saw.

Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them through
``tests/ensure_browser.sh``), driven by Selenium. Every host name resolves to nothing, so
a page that reaches for the network logs an error. Used by tests/test_report_browser.py
and tests/test_run.py.
"""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

INSTALL_HINT = "make test installs them: tests/ensure_browser.sh (apt-get install chromium chromium-driver)"
WIDTH = 1280


def browser_or_skip() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip the calling test with the reason."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed; {INSTALL_HINT}")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    return chromium, driver


def open_page(path: Path, screenshot: Path | None = None) -> dict:
    """Load ``path`` in headless Chromium; return console errors, images, scripts, text.

    ``screenshot``: a full-page PNG is written there.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, driver_path = browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},1000", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(60)
        driver.get(Path(path).resolve().as_uri())
        seen = driver.execute_script("""
            return {
              ready: document.readyState,
              images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
                  naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                  src: i.getAttribute('src').slice(0, 30)})),
              scripts: document.scripts.length,
              resources: performance.getEntriesByType('resource').map(e => e.name),
              height: Math.ceil(document.documentElement.scrollHeight),
              ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
              overflowX: document.documentElement.scrollWidth > window.innerWidth,
            };""")
        seen["console"] = driver.get_log("browser")
        seen["errors"] = [e for e in seen["console"] if e.get("level") == "SEVERE"]
        headline = driver.find_elements(By.ID, "headline")
        seen["headline_text"] = headline[0].text if headline else None
        seen["text"] = driver.find_element(By.TAG_NAME, "body").text
        if screenshot is not None:
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": seen["height"], "scale": 1}})
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        return seen
    finally:
        driver.quit()


def assert_reader_sees_a_report(seen: dict) -> None:
    """The acceptance checks: loaded, no console error, every image decoded, headline present."""
    assert seen["ready"] == "complete"
    assert seen["errors"] == [], seen["errors"]
    assert seen["images"], "no figure on the page"
    for img in seen["images"]:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["src"].startswith("data:image/png;base64,"), img
    assert seen["scripts"] == 0                         # nothing on the page needs JavaScript
    assert seen["resources"] == []                      # nothing fetched besides the file itself
    assert not seen["overflowX"], "the page is wider than the window"
    assert seen["headline_text"] and "verdict" in seen["ids"]
