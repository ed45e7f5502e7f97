"""The staff console's flows in headless Chromium against the whole local stack: sign in as
store A's staff, the inbox, a lead, take over, a text out (the Twilio stand-in gets it), a text
in (shown without a reload), hand back, an edit that meets someone else's, store B's lead by
URL, sign out; customer markup shown as text; axe-core on the inbox and the lead view; a call
placed (then its post-call report), one ElevenLabs could not place, and ones the API refuses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pg8000.native
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from devkit import browser
from devkit.console_stack import ConsoleStack
from devkit.standins import STANDIN_PHONE_NUMBER_ID
from leadlookup.config import DEFAULT_ORGANIZATION_ID as STORE_A
from tests.browser.conftest import Page

# The console promises new texts within 5 s; it polls every 3 s.
NEW_TEXT_WITHIN_S = 5.0
XSS_IMG = '<img src=x onerror="window.__xss = 1">'
XSS_SCRIPT = "<script>window.__xss = 2</script>"


def lead_id(stack: ConsoleStack, token: str, phone: str) -> str:
    """The id of the lead with ``phone`` (through the staff API, as the signed-in member)."""
    answer = stack.staff_api("GET", f"/leads?q={phone.lstrip('+')}", token)
    assert answer.status == 200, answer.body
    digits = phone.lstrip("+")
    leads = [lead for lead in answer.body["leads"] if lead["phone_number_normalized"] == digits]
    assert len(leads) == 1, answer.body
    return str(leads[0]["id"])


def mark_page(page: Page) -> None:
    """A flag that a reload or navigation away would lose."""
    page.driver.execute_script("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return page.driver.execute_script("return window.__sameDocument === true") is True


def serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in ("serious", "critical")]


@pytest.fixture
def ana(page: Page) -> Page:
    """Signed in as Ana, staff of store A, on the inbox."""
    page.sign_in("ana")
    return page


# -- sign-in and the inbox -----------------------------------------------------------------


def test_sign_in_as_store_a_staff_shows_the_inbox_with_their_leads(
    page: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Do you have gravel bikes in stock?")

    page.sign_in("ana")

    assert page.heading() == "Inbox"
    assert "Ana" in page.find("#who").text
    page.find("#inbox-q").send_keys(phone)
    page.wait_for_text(phone)
    assert page.find(".lead-link").get_attribute("href").startswith(stack.console_url + "#/leads/")


def test_inbox_search_filter_and_attention_reason(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Is the shop open on Sunday?")
    token = ana.id_token()
    lead = lead_id(stack, token, phone)
    name = f"Sunday Rider {phone[-4:]}"
    patch = {"customer_name": name, "human_control": True}
    answer = stack.staff_api("PATCH", f"/leads/{lead}", token, patch)
    assert answer.status == 200, answer.body
    # Under staff control, a text nobody answered yet needs attention.
    stack.text_from_customer(phone, "Hello? Anyone there?")

    ana.find("#inbox-q").send_keys(name)
    ana.wait_for_text(name)
    row = ana.find(f'a[data-lead-id="{lead}"]')
    assert "Needs attention: Unanswered text" in row.text
    assert "attention" in row.get_attribute("class").split()
    Select(ana.find("#inbox-status")).select_by_value("closed")  # not this lead's status
    ana.wait_for_text("No leads match.")
    assert name not in ana.find(".leads").text

    # The filters live in the URL: a reload keeps them.
    ana.driver.refresh()
    ana.wait_for_text("No leads match.")
    assert ana.find("#inbox-q").get_attribute("value") == name


# -- the lead view: the whole conversation ------------------------------------------------


def test_take_over_text_out_text_in_without_reload_and_hand_back(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Can someone call me about a trade-in?")
    lead = lead_id(stack, ana.id_token(), phone)

    # Open the lead from the inbox, as staff would.
    ana.find("#inbox-q").send_keys(phone)
    ana.wait_for_text(phone)
    ana.find(f'a[data-lead-id="{lead}"]').click()
    ana.wait(lambda d: d.current_url.endswith(f"#/leads/{lead}"))
    ana.wait_for_text("Can someone call me about a trade-in?")
    mark_page(ana)

    ana.button("Take over").click()
    ana.wait_for_text("You took over")
    ana.button("Hand back to the agent")

    before = len(stack.twilio.forms)
    text = f"Hi, this is Ana from the shop ({phone[-4:]})."
    ana.find("#send-text").send_keys(text)
    assert ana.find("#send-count").text == f"{len(text)} / 1,600 characters"
    ana.button("Send text").click()
    ana.wait_for_text("Text queued")
    ana.wait(lambda d: len(stack.twilio.forms) > before)
    sent = [form for form in stack.twilio.forms[before:] if form.get("To") == phone]
    assert [form["Body"] for form in sent] == [text]
    ana.wait_for_text(text)

    stack.text_from_customer(phone, "Great, Saturday works for me.")
    started = time.monotonic()
    ana.wait_for_text("Great, Saturday works for me.", timeout=NEW_TEXT_WITHIN_S + 1)
    assert time.monotonic() - started <= NEW_TEXT_WITHIN_S
    assert same_document(ana), "the new text came with a reload"

    ana.button("Hand back to the agent").click()
    ana.wait_for_text("Handed back")
    ana.button("Take over")
    assert same_document(ana)


def test_text_counter_blocks_over_1600_characters(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Hello")
    ana.open_lead(lead_id(stack, ana.id_token(), phone))
    box = ana.find("#send-text")

    ana.driver.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
        box,
        "x" * 1601,
    )

    assert ana.find("#send-count").text == "1,601 / 1,600 characters: 1 over the limit"
    send = [b for b in ana.driver.find_elements(By.TAG_NAME, "button") if b.text == "Send text"]
    assert len(send) == 1 and not send[0].is_enabled()


def test_failed_send_shows_the_api_reason(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "STOP")
    ana.open_lead(lead_id(stack, ana.id_token(), phone))

    ana.find("#send-text").send_keys("Are you still there?")
    ana.button("Send text").click()

    ana.wait_for_text("Not sent:")
    message = ana.find("#send-text").find_element(By.XPATH, "ancestor::form//p[@role='alert']")
    assert "opted out" in message.text.lower()


def test_edit_meets_someone_elses_change_and_offers_a_reload(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Looking for a kids' bike")
    token = ana.id_token()
    lead = lead_id(stack, token, phone)
    ana.open_lead(lead)
    ana.find("#profile-customer_name").send_keys("Jamie")

    # Someone else saves first, behind the page's back.
    current = stack.staff_api("GET", f"/leads/{lead}", token)
    changed = stack.staff_api(
        "PATCH",
        f"/leads/{lead}",
        token,
        {"notes": "Prefers email"},
        {"If-Match": current.headers["ETag"]},
    )
    assert changed.status == 200, changed.body
    ana.button("Save profile").click()

    ana.wait_for_text("Someone else changed this lead")
    assert stack.staff_api("GET", f"/leads/{lead}", token).body["customer_name"] is None
    ana.button("Reload the lead").click()
    ana.wait_for_text("Reloaded")
    assert ana.find("#profile-notes").get_attribute("value") == "Prefers email"
    assert ana.find("#profile-customer_name").get_attribute("value") == ""

    # Saved on the fresh version, the edit goes through.
    ana.find("#profile-customer_name").send_keys("Jamie")
    ana.button("Save profile").click()
    ana.wait_for_text("Saved.")
    assert stack.staff_api("GET", f"/leads/{lead}", token).body["customer_name"] == "Jamie"


def test_store_b_lead_by_url_is_not_found(
    page: Page, stack: ConsoleStack, new_phone: Callable[[], str], store_b_lead: str
) -> None:
    page.sign_in("ana", f"#/leads/{store_b_lead}")

    page.wait_for_text("Lead not found")
    assert page.heading() == "Lead not found"
    assert store_b_lead not in page.text()


def test_customer_markup_is_shown_as_text_and_runs_nothing(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, f"{XSS_IMG} {XSS_SCRIPT}")
    token = ana.id_token()
    lead = lead_id(stack, token, phone)
    stack.staff_api("PATCH", f"/leads/{lead}", token, {"customer_name": XSS_IMG})

    ana.find("#inbox-q").send_keys(phone)
    ana.wait_for_text(XSS_IMG)
    ana.open_lead(lead)
    ana.wait_for_text(f"{XSS_IMG} {XSS_SCRIPT}")

    assert ana.no_alert()
    assert ana.driver.execute_script("return window.__xss") is None
    assert ana.heading() == XSS_IMG
    assert ana.driver.find_elements(By.CSS_SELECTOR, "main img, main script") == []


# -- the session ----------------------------------------------------------------------------


def test_expired_session_signs_in_again_and_comes_back_to_the_lead(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Do you rent e-bikes?")
    lead = lead_id(stack, ana.id_token(), phone)
    # A session the API no longer accepts: the token's signature no longer matches.
    ana.driver.execute_script(
        """
        const s = JSON.parse(sessionStorage.getItem('console.session'));
        s.idToken = s.idToken.slice(0, -4) + (s.idToken.endsWith('AAAA') ? 'BBBB' : 'AAAA');
        sessionStorage.setItem('console.session', JSON.stringify(s));
        """
    )

    ana.driver.execute_script("location.hash = arguments[0]", f"#/leads/{lead}")

    ana.pick_user("ana")
    ana.wait(lambda d: d.current_url == f"{stack.console_url}#/leads/{lead}")
    ana.wait_for_text("Do you rent e-bikes?")


def test_sign_out_ends_the_session(ana: Page, stack: ConsoleStack) -> None:
    ana.button("Sign out").click()

    ana.wait_for_text("You are signed out")
    assert ana.driver.current_url.startswith(stack.console_url)
    assert ana.driver.execute_script("return sessionStorage.getItem('console.session')") is None
    ana.button("Sign in").click()
    ana.pick_user("ana")
    ana.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#inbox-q"))


# -- accessibility, phone width, keyboard --------------------------------------------------


def test_axe_finds_no_violations_on_the_inbox_and_the_lead_view(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Hello, any news on my order?")
    ana.find("#inbox-q").send_keys(phone)
    ana.wait_for_text(phone)

    inbox = browser.axe_violations(ana.driver)
    ana.open_lead(lead_id(stack, ana.id_token(), phone))
    ana.wait_for_text("Hello, any news on my order?")
    lead = browser.axe_violations(ana.driver)

    assert serious(inbox) == [] and serious(lead) == []
    assert inbox == [] and lead == []


@pytest.mark.parametrize("view", ["inbox", "lead"])
def test_phone_width_fits_without_sideways_scrolling(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str], view: str
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "A long message " * 20)
    browser.viewport(ana.driver, *browser.PHONE)
    if view == "lead":
        ana.open_lead(lead_id(stack, ana.id_token(), phone))
        ana.wait_for_text("A long message")

    width = ana.driver.execute_script("return document.documentElement.scrollWidth")

    assert width <= browser.PHONE[0]
    assert serious(browser.axe_violations(ana.driver)) == []


def test_keyboard_alone_reaches_a_lead_and_takes_over_with_visible_focus(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Keyboard test")
    active = ana.driver.switch_to

    ana.find("#inbox-q").send_keys(phone)
    ana.wait_for_text(phone)
    ana.find("#inbox-q").send_keys(Keys.TAB)  # -> status
    for _ in range(10):
        if active.active_element.get_attribute("data-lead-id"):
            break
        active.active_element.send_keys(Keys.TAB)
    link = active.active_element
    assert link.get_attribute("data-lead-id"), "Tab never reached the lead"
    outline = ana.driver.execute_script(
        "const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth]"
    )
    assert outline[0] != "none" and outline[1] != "0px"
    link.send_keys(Keys.ENTER)

    ana.wait_for_text("Keyboard test")
    assert active.active_element.tag_name == "h1"
    for _ in range(10):
        active.active_element.send_keys(Keys.TAB)
        if active.active_element.text == "Take over":
            break
    assert active.active_element.text == "Take over"
    active.active_element.send_keys(Keys.ENTER)
    ana.wait_for_text("You took over")


# -- calls, erasure, owners -----------------------------------------------------------------


def test_call_shows_its_summary_and_an_expandable_transcript(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "I'll call you later")
    lead = lead_id(stack, ana.id_token(), phone)
    stack.call_report(phone, lead)
    ana.open_lead(lead)

    call = ana.find(".timeline .item.call")
    transcript = call.find_element(By.TAG_NAME, "details")
    assert not transcript.get_attribute("open")
    assert "Sofia" not in call.text  # the transcript starts folded
    call.find_element(By.TAG_NAME, "summary").click()

    ana.wait(lambda d: "Agent: Hi, thanks for calling" in call.text)
    assert "Customer: Hi Sofia" in call.text


def test_erase_asks_first_then_removes_the_lead(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Please delete my data")
    token = ana.id_token()
    lead = lead_id(stack, token, phone)
    ana.open_lead(lead)

    ana.button("Erase lead…").click()
    ana.button("Cancel").click()
    assert stack.staff_api("GET", f"/leads/{lead}", token).status == 200
    ana.button("Erase lead…").click()
    ana.button("Erase for good").click()

    ana.wait_for_text("Lead erased.")
    assert ana.heading() == "Inbox"
    assert stack.staff_api("GET", f"/leads/{lead}", token).status == 404


def test_owner_gets_a_store_switcher_and_staff_of_one_store_does_not(
    page: Page, stack: ConsoleStack
) -> None:
    page.sign_in("ana")
    assert not page.driver.find_element(By.ID, "inbox-store").is_displayed()

    page.sign_in("olga")

    store = page.find("#inbox-store")
    page.wait(lambda d: store.is_displayed() and len(Select(store).options) >= 2)
    assert Select(store).options[0].text == "All stores"


# -- calling the customer ---------------------------------------------------------------------


@pytest.fixture
def store_a_calls(db: pg8000.native.Connection) -> Iterator[None]:
    """Store A calls from the agent stand-in's number (as `make run` sets it), then not again:
    other tests know store A without one."""
    (before,) = db.run("SELECT settings FROM organizations WHERE id = :id", id=STORE_A)[0]
    db.run(
        "UPDATE organizations SET settings = settings || "
        "jsonb_build_object('agent_phone_number_id', CAST(:phone_id AS text)) WHERE id = :id",
        phone_id=STANDIN_PHONE_NUMBER_ID,
        id=STORE_A,
    )
    try:
        yield
    finally:
        db.run(
            "UPDATE organizations SET settings = CAST(:settings AS jsonb) WHERE id = :id",
            settings=json.dumps(before),
            id=STORE_A,
        )


def call_status(page: Page) -> str:
    """What the lead view says about the last action (the call's progress)."""
    return str(page.find("main p[role='status'][aria-live='polite']").text)


def test_call_shows_calling_then_the_call_it_placed(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str], store_a_calls: None
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Could someone call me back?")
    lead = lead_id(stack, ana.id_token(), phone)
    before = len(stack.agent.outbound_calls)
    ana.open_lead(lead)
    mark_page(ana)

    ana.button("Call customer").click()

    # The stand-in places it at once (in-process, as under `make run`); the page waits for
    # the call's report, the only place its outcome shows.
    ana.wait(lambda d: len(stack.agent.outbound_calls) > before)
    (placed,) = stack.agent.outbound_calls[before:]
    assert placed["status"] == 200
    assert placed["body"]["to_number"] == phone
    ana.wait_for_text("Call requested by ana@example.com")
    assert call_status(ana).startswith("Calling…")
    assert ana.driver.find_elements(By.CSS_SELECTOR, ".timeline .item.call") == []
    call = [b for b in ana.driver.find_elements(By.TAG_NAME, "button") if b.text == "Call customer"]
    assert len(call) == 1 and not call[0].is_enabled()  # no second call while this one runs

    stack.call_report(phone, lead, conversation_id=placed["answer"]["conversation_id"])

    ana.wait(lambda d: call_status(ana).startswith("Call ended"))
    item = ana.find(".timeline .item.call")
    assert item.text.startswith("Outgoing call")
    assert "(placed by ana@example.com)" in item.text
    assert ana.button("Call customer").is_enabled()
    assert same_document(ana)


@pytest.mark.parametrize(
    ("calls_on", "reason"),
    [
        (True, "lead opted out: no calls or texts are sent to it"),
        (False, "the store has no 'agent_phone_number_id' setting: outbound calls are off"),
    ],
    ids=["opted-out", "no-agent-number"],
)
def test_refused_call_shows_the_api_reason(
    ana: Page,
    stack: ConsoleStack,
    new_phone: Callable[[], str],
    request: pytest.FixtureRequest,
    calls_on: bool,
    reason: str,
) -> None:
    if calls_on:
        request.getfixturevalue("store_a_calls")
    phone = new_phone()
    stack.text_from_customer(phone, "STOP" if calls_on else "Call me maybe")
    before = len(stack.agent.outbound_calls)
    ana.open_lead(lead_id(stack, ana.id_token(), phone))

    ana.button("Call customer").click()

    ana.wait_for_text("The call was not placed:")
    alert = ana.find(".actions ~ p[role='alert']")
    assert alert.text.startswith(f"The call was not placed: {reason}")
    assert call_status(ana) == ""
    assert ana.button("Call customer").is_enabled()  # refused: it may be tried again
    assert len(stack.agent.outbound_calls) == before
    assert "Call requested" not in ana.find(".timeline").text


def test_call_elevenlabs_could_not_place_shows_why(
    ana: Page, stack: ConsoleStack, new_phone: Callable[[], str], store_a_calls: None
) -> None:
    phone = new_phone()
    stack.text_from_customer(phone, "Call me when the part arrives")
    ana.open_lead(lead_id(stack, ana.id_token(), phone))
    mode, stack.agent.call_mode = stack.agent.call_mode, "error"
    try:
        ana.button("Call customer").click()

        alert = ana.find(".actions ~ p[role='alert']")
        ana.wait(lambda d: alert.is_displayed())
    finally:
        stack.agent.call_mode = mode
    assert alert.text == "Call could not be placed: ElevenLabs answered HTTP 500: internal error"
    assert call_status(ana) == ""
    assert ana.button("Call customer").is_enabled()
