"""The wallet page's tier card in headless Chromium: the member's status and the progress bar to the next one."""

from __future__ import annotations

from tests.browser.support import chromium, console_errors, screenshot, serve_app
from tests.functional.test_ledger_support import utc
from tests.functional.test_tiers import tiered_shop
from tests.support import CLOCK, ApiClient


def test_the_wallet_shows_the_tier_and_the_progress_to_the_next(api: ApiClient) -> None:
    CLOCK.set(utc("2026-01-15T12:00:00Z"))
    shop = tiered_shop(api)
    mid = shop.order("lena", "l-1", 1_200_000)["member"]["member_id"]  # 1200 points earned: silver
    url = api.post(f"/v1/programs/{shop.pid}/members/{mid}/wallet-links", {}).body["url"]
    path = url.removeprefix("https://srf.test")
    with serve_app() as base, chromium(width=390, height=1400) as driver:
        driver.get(f"{base}{path}?lang=en")
        card = driver.find_element("id", "tier")
        assert driver.find_element("css selector", '[data-field="tier"]').text == "Silver"
        assert "1200 / 3000 points earned towards «Gold»" in card.text
        bar = driver.find_element("css selector", "#tier .bar span")
        assert bar.size["width"] > 0
        assert driver.find_element("css selector", "#tier .bar").get_attribute("aria-valuenow") == "40"
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, overflow
        screenshot(driver, "wallet-tier-en")
        driver.get(f"{base}{path}?lang=ru")
        assert "Ваш статус: Серебро" in driver.find_element("id", "tier").text
        screenshot(driver, "wallet-tier-ru")
        assert console_errors(driver) == []
