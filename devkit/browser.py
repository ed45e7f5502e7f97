"""Headless Chromium for the console's browser tests and screenshots (tests/browser,
``python -m devkit.console_shots``): Debian's Chromium driven through its own chromedriver.

The browser and axe-core are installed by ``devkit.toolchain browser`` (``make test`` runs
it); a missing browser is an error, never a skipped test.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from devkit import toolchain

DESKTOP = (1280, 800)
PHONE = (375, 812)
# How long a page may take to show what a step waits for; the console polls every 3 s and
# promises new texts within 5 s.
WAIT_S = 10


def chrome() -> webdriver.Chrome:
    """A headless Chromium at desktop size; installs it first if needed."""
    chromium, chromedriver = toolchain.ensure_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in (
        "--headless=new",
        # Root in a container has no user namespace for the sandbox.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--lang=en-US",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Service() with an explicit path: Selenium Manager (which downloads drivers) never runs.
    driver = webdriver.Chrome(service=Service(str(chromedriver)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    """Make the page's viewport exactly ``width`` x ``height`` CSS pixels (phone or desktop)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def screenshot(driver: webdriver.Chrome, path: Path, width: int, height: int) -> None:
    """A PNG of the viewport at ``width`` x ``height``."""
    viewport(driver, width, height)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's violations on the current page (WCAG 2.x A and AA rules, best practices)."""
    axe = toolchain.ensure_axe().read_text(encoding="utf-8")
    driver.execute_script(axe)
    result = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ["violations"]})
          .then((r) => done(JSON.stringify(r.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
          })))))
          .catch((e) => done(JSON.stringify(
            [{id: "axe-error", impact: "critical", help: String(e), nodes: []}])));
        """
    )
    violations: list[dict[str, Any]] = json.loads(result)
    return violations
