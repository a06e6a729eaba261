"""Headless Chromium from Debian's packages, driven by Selenium through Debian's chromedriver
(the two come from the same source package, so their versions always match). Installed with
apt when missing, like the servers of tests/backing.py."""

from __future__ import annotations

import json
import shutil
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.backing import install

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    if shutil.which("chromium") is None:
        install("chromium")
    if shutil.which("chromedriver") is None:
        install("chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",  # only the page's own requests reach the log
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every URL the browser asked for since the last call (DevTools' network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(str(message["params"]["request"]["url"]))
    return urls
