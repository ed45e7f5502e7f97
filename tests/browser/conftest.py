"""The staff console in a real browser: one headless Chromium per session, one running stack
per test module.

The stack is the local runner on a free port (every route of template.yaml, the console and
the local sign-in included) with the Twilio and ElevenLabs stand-ins, against this session's
database and a Redis key prefix of its own (devkit.console_stack). Chromium is Debian's,
driven through its chromedriver (devkit.browser); when it cannot be installed the tests fail.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from devkit import browser, console_stack, toolchain
from devkit.console_stack import ConsoleStack

# Customer numbers of these leads: a prefix (+1 672 555) no other test uses, and a random
# start so two sessions against one database would not meet either.
_phones = itertools.count(uuid.uuid4().int % 5000)


# Module scope: the stack sets the environment a `make run` has (stand-ins, PUBLIC_BASE_URL,
# the console's sign-in) and must put it back before other test folders run.
@pytest.fixture(scope="module")
def stack(database_url: str, redis_url: str) -> Iterator[ConsoleStack]:
    """The running stack, shared by the tests of a module."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": f"b{uuid.uuid4().hex[:10]}:",
    }
    running = console_stack.start(env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def chrome() -> Iterator[Chrome]:
    """One headless Chromium for the session (installed first when missing; never skipped)."""
    try:
        toolchain.ensure_browser()
        toolchain.ensure_axe()
    except toolchain.ToolchainError as exc:
        pytest.fail(f"the browser tests need Chromium and axe-core: {exc}", pytrace=False)
    driver = browser.chrome()
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The console as a user sees it: waits for what they would wait for."""

    def __init__(self, driver: Chrome, stack: ConsoleStack) -> None:
        self.driver = driver
        self.stack = stack

    # -- finding and waiting ---------------------------------------------------------------

    def wait(self, condition: Callable[[Chrome], Any], timeout: float = browser.WAIT_S) -> Any:
        """Wait until ``condition(driver)`` is truthy; the failure says what was on the page."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            raise AssertionError(
                f"timed out after {timeout} s at {self.driver.current_url}; the page said:\n"
                + self.text()
            ) from None

    def text(self) -> str:
        """Everything visible in the page's body."""
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except Exception as exc:  # an open alert, a page mid-navigation
            return f"<unreadable: {exc}>"

    def wait_for_text(self, text: str, timeout: float = browser.WAIT_S) -> None:
        """Wait until ``text`` is visible in the body."""
        self.wait(lambda d: text in d.find_element(By.TAG_NAME, "body").text, timeout)

    def find(self, css: str) -> WebElement:
        """The first element matching ``css``, once it exists."""
        found: WebElement = self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, css) or False)[0]
        return found

    def button(self, label: str) -> WebElement:
        """The visible, enabled button whose text is ``label``."""

        def ready(driver: Chrome) -> WebElement | bool:
            for button in driver.find_elements(By.TAG_NAME, "button"):
                if button.text.strip() == label and button.is_displayed() and button.is_enabled():
                    return button
            return False

        found: WebElement = self.wait(ready)
        return found

    def heading(self) -> str:
        """The view's h1."""
        return self.find("main h1").text

    def no_alert(self) -> bool:
        """Whether no JavaScript dialog (alert, confirm, prompt) is open."""
        try:
            self.driver.switch_to.alert  # noqa: B018 - raises when there is none
        except NoAlertPresentException:
            return True
        return False

    # -- journeys --------------------------------------------------------------------------

    def open(self, hash_: str = "#/") -> None:
        """Load the console at ``hash_`` (signing in is up to the caller)."""
        self.driver.get(self.stack.console_url + hash_)

    def sign_in(self, username: str = "ana", hash_: str = "#/") -> None:
        """Open the console signed out and sign in on the local sign-in page as ``username``."""
        self.sign_out_locally()
        self.open(hash_)
        self.pick_user(username)
        self.wait(lambda d: d.current_url.startswith(self.stack.console_url))
        self.find("main h1")

    def pick_user(self, username: str) -> None:
        """On the local sign-in page, press the sample user's button."""
        self.wait(lambda d: "/local-auth/" in d.current_url)
        xpath = f"//button[@value='{username}' or @name='{username}']"
        buttons = self.driver.find_elements(By.XPATH, xpath)
        if not buttons:
            label = {"ana": "Ana", "ben": "Ben", "olga": "Olga"}[username]
            buttons = self.driver.find_elements(By.XPATH, f"//button[contains(., '{label}')]")
        assert buttons, f"no button for {username} on the sign-in page:\n{self.text()}"
        buttons[0].click()

    def sign_out_locally(self) -> None:
        """Forget this tab's session without visiting the sign-in domain."""
        self.driver.get(self.stack.console_url + "config.json")
        self.driver.execute_script("sessionStorage.clear()")

    def id_token(self) -> str:
        """The signed-in page's ID token."""
        token: str = self.driver.execute_script(
            "return JSON.parse(sessionStorage.getItem('console.session')).idToken"
        )
        return token

    def open_lead(self, lead_id: str) -> None:
        """Go to a lead's view by its URL, already signed in."""
        self.driver.execute_script("location.hash = arguments[0]", f"#/leads/{lead_id}")
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ".timeline, .centered"))


@pytest.fixture
def page(chrome: Chrome, stack: ConsoleStack) -> Iterator[Page]:
    """The browser at desktop size, on the stack; left signed in between tests."""
    browser.viewport(chrome, *browser.DESKTOP)
    yield Page(chrome, stack)


@pytest.fixture(scope="module")
def store_b_lead(stack: ConsoleStack) -> str:
    """A lead of store B (a text to store B's number), whose id store A's staff must not use."""
    phone = f"+1672555{next(_phones) % 10_000:04d}"
    stack.text_from_customer(phone, "Hello Kitsilano", to=console_stack.STORE_B_NUMBER)
    answer = stack.staff_api("GET", f"/leads?q={phone.lstrip('+')}", stack.token("ben"))
    assert answer.status == 200, answer.body
    (lead,) = answer.body["leads"]
    return str(lead["id"])


@pytest.fixture
def new_phone() -> Callable[[], str]:
    """A customer phone number no other test of this session uses."""

    def make() -> str:
        return f"+1672555{next(_phones) % 10_000:04d}"

    return make
