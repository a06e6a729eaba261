"""The console in a real browser (headless Chromium): an operator logs in, makes a key, a client
uses it through the gateway, the console shows the request, the key is revoked there and the next
request is refused; no page asks for anything from outside the gateway, breaks its own content
policy, or needs a mouse. Screenshots of every page go to $CONSOLE_SCREENSHOTS (docs/console
when refreshing the committed ones), else to the test's temporary directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.api.console.browser import chromium, requested_urls
from tests.conftest import ADMIN_KEY, ROOT, Server, usage_record

PHONE = (390, 844)
DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium(*DESKTOP)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = (ROOT / chosen) if chosen else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver: webdriver.Chrome, path: Path, size: tuple[int, int] = DESKTOP) -> None:
    """The whole page, not only the window: the window is made as tall as the page."""
    driver.set_window_size(*size)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size[0], max(size[1], int(height)))
    driver.save_screenshot(str(path))
    driver.set_window_size(*size)


def wait_for(driver: webdriver.Chrome, selector: str) -> WebElement:
    """The element, once the page that has it loaded (a submitted form navigates later)."""
    return WebDriverWait(driver, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def nav_links(driver: webdriver.Chrome) -> dict[str, str]:
    links = driver.find_elements(By.CSS_SELECTOR, "nav a")
    return {link.text: str(link.get_attribute("href")) for link in links}


def fits_a_phone(driver: webdriver.Chrome) -> bool:
    driver.set_window_size(*PHONE)
    wide = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    driver.set_window_size(*DESKTOP)
    return bool(wide)


def fits_its_frame(driver: webdriver.Chrome, selector: str) -> bool:
    """Whether the element shows all it holds at the desktop width, without scrolling sideways."""
    frame = driver.find_element(By.CSS_SELECTOR, selector)
    return bool(
        driver.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", frame)
    )


def ask(gateway: Server, secret: str) -> str:
    """The request's id, once the answer came back."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="fake/echo", messages=[{"role": "user", "content": "hello console"}], max_tokens=20
    )
    return str(raw.headers["x-request-id"])


def test_operator_flow(console_gateway: Server, browser: webdriver.Chrome, shots: Path) -> None:
    url = console_gateway.url
    browser.get(url + "/")
    assert browser.current_url == url + "/ui/login"
    screenshot(browser, shots / "login.png")
    assert browser.switch_to.active_element.get_attribute("id") == "admin_key"
    browser.switch_to.active_element.send_keys(ADMIN_KEY, Keys.ENTER)
    wait_for(browser, "nav")
    pages = nav_links(browser)
    assert {"Keys and budgets", "Models"} <= set(pages)

    browser.get(pages["Keys and budgets"])
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    browser.find_element(By.ID, "name").send_keys("browser-key")
    browser.find_element(By.ID, "budget_amount").send_keys("5")
    browser.find_element(By.CSS_SELECTOR, 'input[name="models"][value="fake/echo"]').click()
    browser.find_element(By.CSS_SELECTOR, "#create + form button[type=submit]").send_keys(
        Keys.ENTER
    )
    secret = wait_for(browser, "#new-secret").text
    assert secret.startswith("ek-")
    usage_record(console_gateway, ask(console_gateway, secret))  # in the ledger

    if "Requests" in pages:
        browser.get(pages["Requests"])
        assert "browser-key" in browser.page_source
        assert fits_its_frame(browser, ".table-wrap"), "the requests table scrolls sideways"
    if "Overview" in pages:
        browser.get(pages["Overview"])
        assert "browser-key" in browser.page_source
    browser.get(pages["Models"])
    row = browser.find_element(By.XPATH, "//tr[td[1]/text()[1][normalize-space()='fake/echo']]")
    assert not row.find_element(By.CSS_SELECTOR, 'td[data-label="Requests"]').text.startswith("0")

    for address in pages.values():
        browser.get(address)
        assert browser.find_element(By.TAG_NAME, "h1").text
        screenshot(browser, shots / f"{address.rsplit('/', 1)[-1]}.png")
    browser.get(pages["Keys and budgets"])
    screenshot(browser, shots / "keys-phone.png", PHONE)
    for mine in ("Keys and budgets", "Models"):
        browser.get(pages[mine])
        assert fits_a_phone(browser), f"{mine} is wider than a phone"

    browser.get(pages["Keys and budgets"])
    browser.find_element(By.CSS_SELECTOR, '[aria-label="Revoke key browser-key"]').click()
    revoked = wait_for(browser, "#revoked")
    assert "browser-key" in revoked.find_element(By.XPATH, "following::table").text
    with pytest.raises(openai.AuthenticationError):
        ask(console_gateway, secret)

    outside = [u for u in requested_urls(browser) if not u.startswith((url, "data:"))]
    assert outside == []
    refused = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert refused == []  # nothing blocked by the content policy, no failed load
