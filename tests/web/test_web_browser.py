"""The status page in a real browser: Debian's chromium, headless, driven by Selenium.

Against a running daemon with a demo and a folder source: overview ->
account -> filter -> document -> explain, asserting the visible text, on a
desktop and on a phone-sized window (no horizontal scrolling of the page).
Screenshots go to a temporary folder (its path is printed; CI keeps it as
an artifact when ``INVOICESYNC_SCREENSHOTS`` names a folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.daemon_proc import (
    DaemonProcess,
)
from helpers import free_port, require_program

from .webtools import drop_document, get, web_config

Start = Callable[..., DaemonProcess]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = require_program("chromium", "chromium")
    driver_path = require_program("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots() -> Iterator[Path]:
    folder = Path(os.environ.get("INVOICESYNC_SCREENSHOTS") or tempfile.mkdtemp(prefix="shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    yield folder


def visible_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_overview_account_filter_document_explain(
    tmp_path: Path, start_daemon: Start, browser: Any, shots: Path
) -> None:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def arrived(condition: Any) -> None:
        # A click starts a navigation; WebDriver need not wait for it to end
        # (a form submit especially), so wait for the page we expect (bounded).
        WebDriverWait(
            browser,
            60,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(condition)

    port = free_port()
    cfg = web_config(tmp_path, port, demo_count=60)
    drop_document(
        tmp_path / "inbox", "FOLDER-7", note="delivered by hand", document_date="2026-02-03"
    )
    d = start_daemon(cfg)
    d.wait_event("daemon.started")
    base = f"http://127.0.0.1:{port}"

    def settled(events: list[dict[str, Any]]) -> bool:
        # all 61 documents exported to "everything", and no run in progress on the page
        exported = sum(
            e["exported"]
            for e in events
            if e["event"] == "export.finished" and e["account"] == "everything"
        )
        return exported == 61 and ">running<" not in get(base + "/")[2]

    d.wait_for(settled, timeout=120, what="all documents exported and no run in progress")

    # overview
    browser.get(base + "/")
    text = visible_text(browser)
    for expected in ("Sources", "Export accounts", "demo", "inbox", "archive", "everything"):
        assert expected in text
    assert "scheduler running" in text
    browser.save_screenshot(str(shots / "overview.png"))

    # -> the account
    browser.find_element(By.LINK_TEXT, "archive").click()
    arrived(lambda b: b.current_url == base + "/accounts/archive")
    assert "Account archive" in visible_text(browser)
    browser.save_screenshot(str(shots / "account.png"))

    # -> filter: excluded documents of the demo source
    Select(browser.find_element(By.ID, "f-status")).select_by_visible_text("excluded")
    Select(browser.find_element(By.ID, "f-source")).select_by_visible_text("demo")
    browser.find_element(By.ID, "f-apply").click()
    arrived(lambda b: "status=excluded" in b.current_url and "source=demo" in b.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#documents tbody tr")
    assert rows
    states = {r.find_element(By.CSS_SELECTOR, ".state").text for r in rows}
    assert states == {"excluded"}
    assert all(r.text.startswith("demo/") for r in rows)
    browser.save_screenshot(str(shots / "account-filtered.png"))

    # -> a document, and its explanation
    first = rows[0].find_element(By.TAG_NAME, "a")
    doc_id = first.text
    first.click()
    arrived(lambda b: doc_id in b.find_element(By.TAG_NAME, "h1").text)
    section = browser.find_element(By.ID, "explain-archive")
    explained = section.text
    assert f"{doc_id} on account archive" in explained
    assert "✗ attributes.types: type" in explained
    assert "is not one of incoming_invoice, credit_note" in explained
    assert "verdict: do not export" in explained
    everything = browser.find_element(By.ID, "explain-everything").text
    assert "verdict: export" in everything
    assert "Revisions" in visible_text(browser)
    browser.save_screenshot(str(shots / "document.png"))

    # the runs page
    browser.find_element(By.LINK_TEXT, "Runs").click()
    arrived(lambda b: b.current_url.startswith(base + "/runs"))
    runs_text = visible_text(browser)
    assert "import" in runs_text and "export" in runs_text and "events" in runs_text
    browser.save_screenshot(str(shots / "runs.png"))

    # a phone: the page itself never scrolls sideways (wide tables scroll in their box)
    browser.set_window_size(390, 844)
    for url, name in (
        (base + "/", "phone-overview.png"),
        (base + "/accounts/archive", "phone-account.png"),
    ):
        browser.get(url)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{url} is {overflow}px wider than a phone screen"
        browser.save_screenshot(str(shots / name))
    for name in ("overview", "account", "account-filtered", "document", "runs"):
        assert (shots / f"{name}.png").stat().st_size > 5000
    code, _ = d.stop()
    assert code == 0
    d.check_logs()
    if os.environ.get("INVOICESYNC_SCREENSHOTS_COPY"):
        shutil.copytree(shots, os.environ["INVOICESYNC_SCREENSHOTS_COPY"], dirs_exist_ok=True)
