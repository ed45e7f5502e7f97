"""Screenshots of the staff console for the README: the inbox and a lead, at phone and desktop
widths, from a throwaway database filled through the real webhooks and the staff API.

    python -m devkit.console_shots [--out docs]

Writes console-inbox-phone.png, console-inbox-desktop.png, console-lead-phone.png and
console-lead-desktop.png. PostgreSQL and Redis are found or started as for ``make test``
(devkit.services); the database is created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devkit import browser, console_stack, lambda_env
from devkit.console_stack import ConsoleStack

ROOT = lambda_env.ROOT
SHOTS = {
    "console-inbox-phone.png": ("inbox", browser.PHONE),
    "console-inbox-desktop.png": ("inbox", browser.DESKTOP),
    "console-lead-phone.png": ("lead", browser.PHONE),
    "console-lead-desktop.png": ("lead", browser.DESKTOP),
}


@contextmanager
def scratch_database() -> Iterator[dict[str, str]]:
    """A migrated database of its own on the local PostgreSQL, and Redis; dropped at the end."""
    lambda_env.add_layers_to_path()
    import pg8000.native

    from devkit.services import ensure_services
    from leadlookup.adapters.db import Database
    from leadlookup.adapters.migrate import migrate
    from leadlookup.config import Settings

    urls = ensure_services()
    parts = urlsplit(urls["DATABASE_URL"])
    name = f"bici_shots_{uuid.uuid4().hex[:8]}"
    admin = pg8000.native.Connection(
        user=parts.username or "postgres",
        password=parts.password,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database="postgres",
        timeout=10,
    )
    admin.run(f"CREATE DATABASE {name}")
    url = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        db = Database(Settings(database_url=url))
        migrate(db)
        db.close()
        yield {
            "DATABASE_URL": url,
            "REDIS_URL": urls["REDIS_URL"],
            "CACHE_KEY_PREFIX": f"shots{uuid.uuid4().hex[:6]}:",
        }
    finally:
        admin.run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        admin.run(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def wait(condition: Callable[[], Any], what: str, timeout_s: float = browser.WAIT_S) -> Any:
    """Poll ``condition`` until it is truthy; the error names ``what`` did not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def lead_id(stack: ConsoleStack, token: str, phone: str) -> str:
    """The lead of ``phone``, through the staff API."""
    answer = stack.staff_api("GET", f"/leads?q={phone.lstrip('+')}", token)
    digits = phone.lstrip("+")
    leads = [lead for lead in answer.body["leads"] if lead["phone_number_normalized"] == digits]
    return str(leads[0]["id"])


def fill(stack: ConsoleStack, token: str) -> str:
    """A morning's worth of leads for store A; returns the one the lead shots show."""
    texts = [
        ("+16045550142", "Maya Chen", "Hi! Is the Trek Checkpoint ALR 5 in stock in a 56?"),
        ("+16045550177", "Jonas Weber", "Can I book a tune-up for Saturday morning?"),
        ("+16045550108", None, "Do you price-match online stores?"),
        ("+16045550190", "Priya Nair", "Thanks, see you at 3!"),
    ]
    for phone, _, body in texts:
        stack.text_from_customer(phone, body)
    ids = {phone: lead_id(stack, token, phone) for phone, _, _ in texts}
    for phone, name, _ in texts:
        if name:
            stack.staff_api("PATCH", f"/leads/{ids[phone]}", token, {"customer_name": name})
    stack.staff_api("PATCH", f"/leads/{ids['+16045550190']}", token, {"status": "customer"})

    shown = ids["+16045550142"]
    stack.call_report("+16045550142", shown, customer_name="Maya Chen")
    lead = stack.staff_api("GET", f"/leads/{shown}", token)
    stack.staff_api(
        "PATCH",
        f"/leads/{shown}",
        token,
        {"human_control": True, "status": "hot"},
        {"If-Match": lead.headers.get("ETag", "*")},
    )
    stack.staff_api(
        "POST",
        f"/leads/{shown}/messages",
        token,
        {"body": "Hi Maya, it's Ana from the shop: we have the 56 in stock. Want to ride it?"},
    )
    stack.text_from_customer("+16045550142", "Yes please! Saturday at 11?")
    return shown


def shoot(out: Path) -> list[Path]:
    """Fill a scratch database, sign in as Ana (store A) and write the four screenshots."""
    written: list[Path] = []
    with scratch_database() as env:
        stack = console_stack.start(env)
        driver = browser.chrome()
        try:
            driver.get(stack.console_url)
            wait(lambda: "/local-auth/" in driver.current_url, "the sign-in page")
            driver.find_element("xpath", "//button[@value='ana' or contains(., 'Ana')]").click()
            wait(lambda: driver.find_elements("css selector", "#inbox-q"), "the inbox")
            token = driver.execute_script(
                "return JSON.parse(sessionStorage.getItem('console.session')).idToken"
            )
            shown = fill(stack, token)
            for name, (view, (width, height)) in SHOTS.items():
                browser.viewport(driver, width, height)
                if view == "inbox":
                    # Through a lead and back: a fresh inbox, not one waiting for its next poll.
                    driver.execute_script("location.hash = arguments[0]", f"#/leads/{shown}")
                    driver.execute_script("location.hash = '#/'")
                    filled = lambda: "Needs attention" in driver.page_source  # noqa: E731
                    wait(filled, "the filled inbox")
                else:
                    driver.execute_script("location.hash = arguments[0]", f"#/leads/{shown}")
                    wait(lambda: "Saturday at 11" in driver.page_source, "the lead's timeline")
                time.sleep(0.5)  # let fonts and layout settle
                driver.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
                path = out / name
                browser.screenshot(driver, path, width, height)
                written.append(path)
        finally:
            driver.quit()
            stack.stop()
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; print their paths."""
    parser = argparse.ArgumentParser(prog="python -m devkit.console_shots", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder (default docs/)")
    options = parser.parse_args(argv)
    for path in shoot(options.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
