"""The HTML report in headless Chromium: loads without console errors, every section and image shows.

Needs the Debian packages ``chromium`` and ``chromium-driver``; without them this test fails (it does
not skip) and says to run ``scripts/install_chromium.sh``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recbias.report import build_report
from report_helpers import AUDIT_SECTIONS, fake_comparison, fake_run

INSTALL_HINT = "headless Chromium is needed for the report test: run scripts/install_chromium.sh"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        missing = [
            n for n, p in (("chromium", chromium), ("chromedriver", driver_path)) if p is None
        ]
        pytest.fail(f"{', '.join(missing)} not found on PATH; {INSTALL_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,2000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    yield driver
    driver.quit()


WINDOW_WIDTH = 1280  # the window above; the page body is at most 1280 px wide


def _load(browser, html: Path) -> list[dict]:
    browser.get(html.resolve().as_uri())
    state = browser.execute_script("return document.readyState")
    assert state == "complete"
    return browser.get_log("browser")


def test_report_renders_in_headless_chromium(browser, tmp_path):
    runs = [fake_run(tmp_path, "sft"), fake_run(tmp_path, "gdrt")]
    paths = build_report(runs, tmp_path / "report")
    logs = _load(browser, paths.html)
    severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert severe == [], f"console errors: {severe}"

    anchors = browser.execute_script(
        "return Array.from(document.querySelectorAll('#contents a')).map(a => a.hash.slice(1))"
    )
    expected = ["overview-accuracy", "sft", "gdrt"]
    expected += [f"{run}-{key}" for run in ("sft", "gdrt") for key, _, _ in AUDIT_SECTIONS]
    assert set(expected) <= set(anchors)
    assert len(anchors) == len(set(anchors)) == 13  # overview + 2 × (part + 5 sections)
    for anchor in anchors:
        element = browser.find_element("id", anchor)
        assert element.is_displayed(), anchor
        heading = element.find_element("css selector", "h2, h3")
        assert heading.is_displayed() and heading.text.strip(), anchor

    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(sizes) == len(paths.figures) == 9  # cross-run + 2 × (forest, training, 2 audit)
    assert all(done and width > 0 and height > 0 for done, width, height in sizes), sizes
    assert browser.execute_script("return document.scripts.length") == 0


def test_reproducibility_starts_collapsed_and_opens(browser, tmp_path):
    paths = build_report([fake_run(tmp_path)], tmp_path / "report")
    _load(browser, paths.html)
    table = browser.find_element("css selector", "#run-a-reproducibility table")
    assert not table.is_displayed()
    browser.find_element("css selector", "#run-a-reproducibility summary").click()
    assert table.is_displayed()


def test_accuracy_tables_fit_the_page_without_scrolling(browser, tmp_path):
    """The quickstart's five cut-offs and a nine-method comparison at three: no table is wider
    than its container, so no column hides behind a horizontal scroll bar."""
    run = fake_run(tmp_path, "quickstart", ks=(1, 3, 5, 10, 20))
    names = ("sft", "gdrt", "igd", "msl", "pos", "cft", "reweight", "d3", "igd_decoding")
    paths = build_report([run, fake_comparison(tmp_path, names, (5, 10, 20))], tmp_path / "r")
    _load(browser, paths.html)
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('.table-wrap')).map(w => "
        "[w.firstElementChild.id, w.scrollWidth, w.clientWidth])"
    )
    accuracy = [w for w in widths if "accuracy" in w[0]]
    assert len(accuracy) == 2 + 2 + 2  # HR and NDCG: run, comparison, across runs
    assert all(0 < client <= WINDOW_WIDTH for _, _, client in widths)
    too_wide = [(name, scroll, client) for name, scroll, client in widths if scroll > client]
    assert too_wide == []


def test_a_table_wider_than_the_page_scrolls_with_its_first_column_in_view(browser, tmp_path):
    run = fake_run(tmp_path, "wide", ks=tuple(range(1, 41)))  # 40 HR@K columns
    paths = build_report([run], tmp_path / "r")
    _load(browser, paths.html)
    wrap = browser.find_element("css selector", ".table-wrap:has(#table-accuracy_hr)")
    assert browser.execute_script("return arguments[0].scrollWidth", wrap) > wrap.size["width"]
    browser.execute_script("arguments[0].scrollLeft = 10000", wrap)
    first = wrap.find_element("css selector", "tbody td:first-child")
    left = browser.execute_script(
        "return arguments[0].getBoundingClientRect().left - "
        "arguments[1].getBoundingClientRect().left",
        first,
        wrap,
    )
    assert abs(left) < 1 and first.text == "llm"
