"""The dashboard in headless Chromium against the local app, with the hand-computed analytics history."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.notify import sources
from tests.browser.support import chromium, console_errors, screenshot, serve_app, wait_for
from tests.conftest import OPERATOR_KEY
from tests.functional.test_analytics import history
from tests.support import CLOCK, ApiClient

PANELS = ("funnel", "rate", "kfactor", "cohorts", "roi", "leaderboard", "channels", "delivery", "review")
SETTLED = ("return [...document.querySelectorAll('[data-panel]')].every("
           "s => s.dataset.state && s.dataset.state !== 'loading')")


@pytest.fixture
def seeded(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.functional.test_ledger_support import utc

    monkeypatch.setattr(sources, "MAX_PARALLEL", 1)
    CLOCK.set(utc("2026-01-10T09:00:00Z"))
    return history(api)


def sign_in(driver: Any, key: str) -> None:
    box = driver.find_element("id", "key")
    box.clear()
    box.send_keys(key)
    driver.find_element("css selector", "#signin-form button").click()


def show_january(driver: Any) -> None:
    driver.execute_script("document.getElementById('from').value='2026-01-01';"
                          "document.getElementById('to').value='2026-01-31';"
                          "document.querySelector('#filters button[type=submit]').click();")
    wait_for(driver, SETTLED)


def test_dashboard_signs_in_and_shows_every_panel_with_data(seeded: Any) -> None:
    shop, _members = seeded
    with serve_app() as base, chromium() as driver:
        driver.get(f"{base}/dashboard")
        sign_in(driver, "srf_op_wrong-key-0000000000000000000000000000")
        wait_for(driver, "return !document.getElementById('signin-error').hidden")
        message = driver.find_element("id", "signin-error").text
        assert "not accepted (401)" in message
        assert driver.execute_script("return sessionStorage.getItem('sarafan_key')") is None
        screenshot(driver, "dashboard-bad-key")
        # The browser logs the refused request itself; nothing else went wrong (this also empties the log).
        assert [e for e in console_errors(driver) if "401 (Unauthorized)" not in e] == []

        sign_in(driver, OPERATOR_KEY)
        wait_for(driver, "return !document.getElementById('panels').hidden")
        assert driver.execute_script("return sessionStorage.getItem('sarafan_key')") == OPERATOR_KEY
        driver.execute_script(f"document.getElementById('program').value='{shop.pid}'")
        show_january(driver)
        states = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('[data-panel]')].map("
            "s => [s.dataset.panel, s.dataset.state]))")
        assert {p: states[p] for p in PANELS} == dict.fromkeys(PANELS, "ready"), states
        text = {p: driver.find_element("css selector", f'[data-panel="{p}"] .body').text for p in PANELS}
        assert driver.find_elements("css selector", '[data-panel="funnel"] .uplot canvas')
        assert "66.7 %" in text["rate"] and "2 of 3 new customers" in text["rate"]  # hand-computed in the history
        assert "0.50" in text["kfactor"] and "≤ 2 d" in text["kfactor"]
        assert "93,333" not in text["cohorts"] and "933.33" in text["cohorts"]  # average order, in major units
        assert "bring-a-friend" in text["roi"] and "2,300" in text["roi"]  # P0's referred revenue 230,000 minor
        assert "(" + _members["anna"]["code"] + ")" in text["leaderboard"]
        assert "click source: telegram" in text["channels"]
        assert text["review"].startswith("0")  # nothing held in this history
        assert OPERATOR_KEY not in driver.current_url
        assert console_errors(driver) == []
        screenshot(driver, "dashboard")

        driver.set_window_size(390, 1600)
        show_january(driver)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, overflow
        screenshot(driver, "dashboard-phone")
        assert console_errors(driver) == []


def test_a_partner_key_sees_its_dashboard(seeded: Any) -> None:
    shop, _ = seeded
    partner = shop.partners[1]
    with serve_app() as base, chromium() as driver:
        driver.get(f"{base}/dashboard")
        sign_in(driver, partner["api_key"])
        wait_for(driver, "return !document.getElementById('panels').hidden")
        show_january(driver)
        funnel = driver.find_element("css selector", '[data-panel="funnel"]').get_attribute("data-state")
        assert funnel == "ready"
        assert console_errors(driver) == []
