"""The wallet page in headless Chromium: a real member's wallet; tampered and expired links refused."""

from __future__ import annotations

from datetime import timedelta

from chalicelib.services import wallet
from tests.browser.support import chromium, console_errors, screenshot, serve_app
from tests.functional.test_ledger_support import Shop
from tests.functional.test_wallet import link, people, shop  # noqa: F401  (the fixture)
from tests.support import CLOCK, ApiClient


def test_the_wallet_renders_for_a_member_and_refuses_bad_links(api: ApiClient, shop: Shop) -> None:  # noqa: F811
    anna, _boris = people(shop)
    url = link(api, shop, anna["member_id"]).body["url"]
    path = url.removeprefix("https://srf.test")
    with serve_app() as base, chromium(width=390, height=1400) as driver:
        driver.get(f"{base}{path}?lang=en")
        assert driver.find_element("css selector", '[data-field="available"]').text == "500"
        assert driver.find_element("css selector", "#invite .qr svg")
        assert "B***: made a purchase" in driver.find_element("id", "friends").text
        assert "+500" in driver.find_element("id", "history").text
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, overflow
        screenshot(driver, "wallet-en")
        driver.get(f"{base}{path}?lang=ru")
        assert "Ваш кошелёк" in driver.title
        screenshot(driver, "wallet-ru")
        assert console_errors(driver) == []

        payload, mac = path.rsplit("/", 1)[1].split(".")
        driver.get(f"{base}/w/{payload}.{mac[::-1]}")
        assert "invalid or has expired" in driver.find_element("id", "invalid").text
        assert not driver.find_elements("css selector", "[data-field]")
        expired = wallet.make_token(shop.pid, anna["member_id"], CLOCK.now() - timedelta(seconds=1))
        driver.get(f"{base}/w/{expired}")
        assert "invalid or has expired" in driver.find_element("id", "invalid").text
        screenshot(driver, "wallet-expired")
