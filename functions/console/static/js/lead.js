// One lead: the editable profile (If-Match on every save; a 412 says someone else changed it
// and offers a reload), the timeline (texts with delivery status and sender, calls with
// summary and transcript, notes), take over / hand back, a text with a 1,600-character
// counter, a call and its outcome, and erasure after a confirmation.
// New texts and calls appear without a reload: the store's inbox ETag is polled (304 costs
// nothing) and the lead and its timeline are fetched again only when it changes.

import { request, leadPath, newKey, ApiError, SessionEnded } from "./api.js";
import { h, replace, setText, focusHeading, uid } from "./dom.js";
import {
  STATUSES, SENTIMENTS, MAX_TEXT_CHARS, statusLabel, senderLabel, staffName, deliveryLabel,
  isFailedDelivery, when, duration, charCount, thousands, leadTitle,
} from "./format.js";
import { POLL_MS } from "./inbox.js";

const TIMELINE_PAGE = 50;
const PROFILE_FIELDS = ["customer_name", "email", "status", "sentiment", "notes"];

export function showLead(main, id, context) {
  const state = {
    lead: null,
    formBase: null, // the lead the form was filled from: its version goes in If-Match
    dirty: false,
    items: [],
    older: [],
    next: null,
    rendered: "",
    etag: null,
    timer: null,
    stopped: false,
    call: null, // {id, since}: a call placed from this page, waiting for its outcome
    openTranscripts: new Set(),
  };
  const view = { stop };

  replace(main, h("p", { class: "muted", role: "status" }, "Loading the lead…"));
  start();
  return view;

  function stop() {
    state.stopped = true;
    clearTimeout(state.timer);
    document.removeEventListener("visibilitychange", onVisible);
  }

  async function start() {
    try {
      const [lead, timeline] = await Promise.all([
        request("GET", leadPath(id)),
        request("GET", leadPath(id, `/timeline?limit=${TIMELINE_PAGE}&transcripts=true`)),
      ]);
      if (state.stopped) return;
      state.lead = lead.data;
      state.items = timeline.data.items || [];
      state.next = timeline.data.next || null;
      build();
      schedule(0);
      document.addEventListener("visibilitychange", onVisible);
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      if (error instanceof ApiError && error.status === 404) {
        notFound();
      } else {
        failed(error);
      }
    }
  }

  function notFound() {
    stop();
    replace(main, h("section", { class: "panel centered" },
      h("h1", {}, "Lead not found"),
      h("p", {}, "No lead with this link is in your stores. It may have been erased, or it belongs to another store."),
      h("a", { href: "#/", class: "button" }, "Go to the inbox")));
    focusHeading(main);
  }

  function failed(error) {
    replace(main, h("section", { class: "panel centered" },
      h("h1", {}, "The lead could not be loaded"),
      h("p", { class: "error" }, error.message || String(error)),
      h("div", { class: "form-actions" },
        h("button", { type: "button", onclick: () => { replace(main, h("p", { class: "muted", role: "status" }, "Loading the lead…")); start(); } }, "Try again"),
        h("a", { href: "#/", class: "button secondary" }, "Go to the inbox"))));
    focusHeading(main);
  }

  // -- the page -------------------------------------------------------------------------

  function build() {
    const el = (state.el = {});
    el.title = h("h1", {});
    el.meta = h("div", { class: "lead-meta" });
    el.control = h("p", { class: "notice" });
    el.takeOver = h("button", { type: "button", onclick: toggleControl });
    el.call = h("button", { type: "button", class: "secondary", onclick: placeCall }, "Call customer");
    el.erase = h("button", { type: "button", class: "danger secondary", onclick: askErase }, "Erase lead…");
    el.actionStatus = h("p", { class: "muted", role: "status", "aria-live": "polite" });
    el.actionError = h("p", { class: "error", role: "alert", hidden: true });

    replace(main,
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "← Inbox")),
      el.title, el.meta, el.control,
      h("div", { class: "actions" }, el.takeOver, el.call, el.erase),
      el.actionStatus, el.actionError,
      h("div", { class: "columns" }, conversationSection(), profileSection()),
      eraseDialog());
    renderHeader();
    fillForm(state.lead);
    renderTimeline();
    focusHeading(main);
  }

  function renderHeader() {
    const lead = state.lead;
    const el = state.el;
    setText(el.title, leadTitle(lead));
    document.title = `${leadTitle(lead)} · Staff console`;
    replace(el.meta,
      lead.customer_name ? h("span", {}, lead.phone_number) : null,
      h("span", { class: "badge" }, statusLabel(lead.status)),
      lead.human_control ? h("span", { class: "badge human" }, "Staff has this conversation") : null,
      lead.opted_out_at ? h("span", { class: "badge opted-out" }, `Opted out ${when(lead.opted_out_at)}`) : null);
    setText(el.control, lead.human_control
      ? "You (staff) have this conversation: the AI agent does not answer this customer's texts."
      : "The AI agent answers this customer's texts. Take over to answer them yourself.");
    setText(el.takeOver, lead.human_control ? "Hand back to the agent" : "Take over");
  }

  // -- profile ----------------------------------------------------------------------------

  function profileSection() {
    const el = state.el;
    const field = (name, label, control, wide = false) => {
      control.id = `profile-${name}`;
      control.name = name;
      control.addEventListener("input", () => { state.dirty = true; });
      el[name] = control;
      return h("div", { class: wide ? "wide" : "" }, h("label", { for: control.id }, label), control);
    };
    el.saveStatus = h("p", { class: "muted", role: "status", "aria-live": "polite" });
    el.conflict = h("div", { class: "notice", role: "alert", hidden: true },
      h("p", {}, "Someone else changed this lead while you were editing, so your changes were not saved."),
      h("button", { type: "button", class: "secondary", onclick: reloadProfile }, "Reload the lead"));
    el.saveError = h("p", { class: "error", role: "alert", hidden: true });
    el.facts = h("dl", { class: "facts" });
    return h("section", { class: "panel", "aria-labelledby": "profile-heading" },
      h("h2", { id: "profile-heading" }, "Profile"),
      h("form", { novalidate: true, onsubmit: saveProfile },
        h("div", { class: "form-grid two" },
          field("customer_name", "Name", h("input", { type: "text", autocomplete: "off", maxlength: 10000 })),
          field("email", "Email", h("input", { type: "email", autocomplete: "off", maxlength: 320 })),
          field("status", "Status", h("select", {}, STATUSES.map((s) => h("option", { value: s }, statusLabel(s))))),
          field("sentiment", "Sentiment", h("select", {}, SENTIMENTS.map((s) => h("option", { value: s }, s[0].toUpperCase() + s.slice(1))))),
          field("notes", "Notes", h("textarea", { rows: 4, maxlength: 10000 }), true)),
        h("div", { class: "form-actions" }, h("button", { type: "submit" }, "Save profile"), el.saveStatus),
        el.conflict, el.saveError),
      el.facts);
  }

  function fillForm(lead) {
    const el = state.el;
    el.customer_name.value = lead.customer_name || "";
    el.email.value = lead.email || "";
    el.status.value = lead.status || "new";
    el.sentiment.value = lead.sentiment || "neutral";
    el.notes.value = lead.notes || "";
    state.formBase = lead;
    state.dirty = false;
    renderFacts(lead);
  }

  function renderFacts(lead) {
    const rows = [];
    const add = (term, value) => {
      if (value === undefined || value === null || value === "") return;
      rows.push(h("dt", {}, term), h("dd", {}, String(value)));
    };
    add("Phone", lead.phone_number);
    add("Last summary", lead.last_summary);
    for (const [key, value] of Object.entries(lead.bike_interest || {})) add(`Bike interest: ${key}`, typeof value === "object" ? JSON.stringify(value) : value);
    for (const [key, value] of Object.entries(lead.qualification_data || {})) add(`Qualification: ${key}`, typeof value === "object" ? JSON.stringify(value) : value);
    add("Callback requested", when(lead.callback_requested_at));
    add("Calls and texts", lead.interaction_count);
    add("First contact", when(lead.created_at));
    replace(state.el.facts, rows);
  }

  function formValues() {
    const el = state.el;
    const text = (value) => (value.trim() === "" ? null : value);
    return {
      customer_name: text(el.customer_name.value),
      email: text(el.email.value.trim()),
      status: el.status.value,
      sentiment: el.sentiment.value,
      notes: text(el.notes.value),
    };
  }

  async function saveProfile(event) {
    event.preventDefault();
    const el = state.el;
    el.conflict.hidden = true;
    el.saveError.hidden = true;
    const values = formValues();
    const base = state.formBase;
    const patch = {};
    for (const name of PROFILE_FIELDS) {
      if ((base[name] ?? null) !== values[name]) patch[name] = values[name];
    }
    if (!Object.keys(patch).length) {
      setText(el.saveStatus, "Nothing to save.");
      return;
    }
    setText(el.saveStatus, "Saving…");
    try {
      const answer = await request("PATCH", leadPath(id), { body: patch, headers: { "If-Match": `"${base.version}"` } });
      if (state.stopped) return;
      state.lead = answer.data;
      fillForm(answer.data);
      renderHeader();
      setText(el.saveStatus, "Saved.");
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      setText(el.saveStatus, "");
      if (error instanceof ApiError && error.status === 412) {
        el.conflict.hidden = false;
      } else if (error instanceof ApiError && error.status === 404) {
        notFound();
      } else {
        setText(el.saveError, `Not saved: ${error.message}`);
        el.saveError.hidden = false;
      }
    }
  }

  async function reloadProfile() {
    try {
      const answer = await request("GET", leadPath(id));
      if (state.stopped) return;
      state.lead = answer.data;
      fillForm(answer.data);
      renderHeader();
      state.el.conflict.hidden = true;
      setText(state.el.saveStatus, "Reloaded: these are the latest details.");
      state.el.customer_name.focus();
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      if (error instanceof ApiError && error.status === 404) notFound();
      else showActionError(error);
    }
  }

  // -- actions ----------------------------------------------------------------------------

  function showActionError(error) {
    setText(state.el.actionError, error.message || String(error));
    state.el.actionError.hidden = false;
  }

  function clearAction() {
    state.el.actionError.hidden = true;
    setText(state.el.actionStatus, "");
  }

  async function toggleControl() {
    const el = state.el;
    clearAction();
    const before = state.lead;
    const on = !before.human_control;
    el.takeOver.disabled = true;
    try {
      const answer = await request("PATCH", leadPath(id), {
        body: { human_control: on }, headers: { "If-Match": `"${before.version}"` },
      });
      if (state.stopped) return;
      state.lead = answer.data;
      // Our own change must not make the open edit look like someone else's.
      if (state.dirty && state.formBase.version === before.version) state.formBase = { ...state.formBase, version: answer.data.version };
      else if (!state.dirty) fillForm(answer.data);
      renderHeader();
      setText(el.actionStatus, on ? "You took over: the agent will not answer texts." : "Handed back: the agent answers texts again.");
      refresh();
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      if (error instanceof ApiError && error.status === 412) {
        showActionError("Someone else changed this lead just now. It has been reloaded: check it and try again.");
        refresh();
      } else if (error instanceof ApiError && error.status === 404) {
        notFound();
      } else {
        showActionError(error);
      }
    } finally {
      el.takeOver.disabled = false;
    }
  }

  async function placeCall() {
    const el = state.el;
    clearAction();
    el.call.disabled = true;
    setText(el.actionStatus, "Calling…");
    // What the timeline held before the request: whatever comes after is this call's.
    const seen = new Set(state.items.map((item) => `${item.kind}:${item.id}`));
    try {
      const answer = await request("POST", leadPath(id, "/calls"), { headers: { "Idempotency-Key": newKey() } });
      if (state.stopped) return;
      state.call = { id: answer.data.call_id, seen };
      setText(el.actionStatus, "Calling… the outcome shows here when the call ends.");
      refresh();
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      setText(el.actionStatus, "");
      showActionError(`The call was not placed: ${error.message}`);
      el.call.disabled = false;
    }
  }

  // The call's outcome is what the timeline gains after the request: the outbound call
  // itself (with its summary, once ElevenLabs reports it) or a note saying why it failed.
  function checkCallOutcome() {
    const call = state.call;
    if (!call) return;
    const fresh = state.items.filter((item) => !call.seen.has(`${item.kind}:${item.id}`));
    const ended = fresh.find((item) => item.kind === "call" && item.direction === "outbound");
    const failed = fresh.find((item) => item.kind === "note" && /could not|failed|not placed|no answer|busy/i.test(item.text || ""));
    if (ended) {
      const parts = ["Call ended"];
      if (ended.classification) parts.push(ended.classification);
      if (ended.duration_seconds !== undefined && ended.duration_seconds !== null) parts.push(duration(ended.duration_seconds));
      setText(state.el.actionStatus, `${parts.join(" · ")}${ended.summary ? `: ${ended.summary}` : ""}`);
    } else if (failed) {
      setText(state.el.actionStatus, "");
      showActionError(failed.text);
    } else {
      return;
    }
    state.call = null;
    state.el.call.disabled = false;
  }

  function eraseDialog() {
    const el = state.el;
    const titleId = uid("erase-title");
    el.eraseError = h("p", { class: "error", role: "alert", hidden: true });
    el.eraseConfirm = h("button", { type: "button", class: "danger", onclick: erase }, "Erase for good");
    el.eraseCancel = h("button", { type: "button", class: "secondary", onclick: () => el.dialog.close() }, "Cancel");
    el.eraseText = h("p", {});
    el.dialog = h("dialog", { "aria-labelledby": titleId },
      h("h2", { id: titleId }, "Erase this lead?"),
      el.eraseText,
      el.eraseError,
      h("div", { class: "form-actions" }, el.eraseConfirm, el.eraseCancel));
    return el.dialog;
  }

  function askErase() {
    const el = state.el;
    el.eraseError.hidden = true;
    setText(el.eraseText, `This deletes ${leadTitle(state.lead)}: the profile, texts, calls and notes, for good. It cannot be undone.`);
    el.dialog.showModal();
    el.eraseCancel.focus();
  }

  async function erase() {
    const el = state.el;
    el.eraseConfirm.disabled = true;
    try {
      await request("DELETE", leadPath(id));
      el.dialog.close();
      stop();
      context.navigate("#/", "Lead erased.");
    } catch (error) {
      if (error instanceof SessionEnded) return;
      setText(el.eraseError, `Not erased: ${error.message}`);
      el.eraseError.hidden = false;
    } finally {
      el.eraseConfirm.disabled = false;
    }
  }

  // -- conversation -----------------------------------------------------------------------

  function conversationSection() {
    const el = state.el;
    el.text = h("textarea", { id: "send-text", name: "body", rows: 3, "aria-describedby": "send-count" , oninput: countText });
    el.count = h("p", { id: "send-count", class: "counter" });
    el.send = h("button", { type: "submit" }, "Send text");
    el.sendStatus = h("p", { class: "muted", role: "status", "aria-live": "polite" });
    el.sendError = h("p", { class: "error", role: "alert", hidden: true });
    el.timeline = h("ol", { class: "timeline", "aria-label": "Conversation, newest first" });
    el.olderButton = h("button", { type: "button", class: "secondary", onclick: loadOlder, hidden: true }, "Show older");
    countText();
    return h("section", { class: "panel", "aria-labelledby": "conversation-heading" },
      h("h2", { id: "conversation-heading" }, "Conversation"),
      h("form", { onsubmit: sendText },
        h("label", { for: "send-text" }, "Text to the customer"),
        el.text, el.count,
        h("div", { class: "form-actions" }, el.send, el.sendStatus),
        el.sendError),
      el.timeline, el.olderButton);
  }

  function countText() {
    const el = state.el;
    const n = charCount(el.text.value);
    const over = n > MAX_TEXT_CHARS;
    setText(el.count, over
      ? `${thousands(n)} / ${thousands(MAX_TEXT_CHARS)} characters: ${thousands(n - MAX_TEXT_CHARS)} over the limit`
      : `${thousands(n)} / ${thousands(MAX_TEXT_CHARS)} characters`);
    el.count.classList.toggle("over", over);
    el.send.disabled = over || n === 0 || el.text.value.trim() === "";
  }

  async function sendText(event) {
    event.preventDefault();
    const el = state.el;
    const body = el.text.value;
    if (!body.trim() || charCount(body) > MAX_TEXT_CHARS) return;
    el.sendError.hidden = true;
    el.send.disabled = true;
    setText(el.sendStatus, "Sending…");
    try {
      await request("POST", leadPath(id, "/messages"), { body: { body }, headers: { "Idempotency-Key": newKey() } });
      if (state.stopped) return;
      el.text.value = "";
      countText();
      setText(el.sendStatus, "Text queued: its delivery status shows below.");
      refresh();
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      setText(el.sendStatus, "");
      setText(el.sendError, `Not sent: ${error.message}`);
      el.sendError.hidden = false;
      countText();
    }
  }

  async function loadOlder() {
    if (!state.next) return;
    state.el.olderButton.disabled = true;
    try {
      const answer = await request("GET", leadPath(id, `/timeline?limit=${TIMELINE_PAGE}&transcripts=true&next=${encodeURIComponent(state.next)}`));
      if (state.stopped) return;
      state.older = state.older.concat(answer.data.items || []);
      state.next = answer.data.next || null;
      renderTimeline();
    } catch (error) {
      if (!(error instanceof SessionEnded)) showActionError(error);
    } finally {
      state.el.olderButton.disabled = false;
    }
  }

  function renderTimeline() {
    const el = state.el;
    const seen = new Set(state.items.map((item) => `${item.kind}:${item.id}`));
    const items = state.items.concat(state.older.filter((item) => !seen.has(`${item.kind}:${item.id}`)));
    const snapshot = JSON.stringify(items);
    el.olderButton.hidden = !state.next;
    if (snapshot === state.rendered) return;
    state.rendered = snapshot;
    const focused = document.activeElement && el.timeline.contains(document.activeElement) ? document.activeElement.dataset.itemKey : null;
    replace(el.timeline, items.length ? items.map(timelineItem) : h("li", { class: "muted" }, "No texts, calls or notes yet."));
    if (focused) {
      const again = el.timeline.querySelector(`[data-item-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  function timelineItem(item) {
    const at = h("time", { datetime: item.at || "" }, when(item.at));
    if (item.kind === "text") {
      const failedDelivery = isFailedDelivery(item.status);
      const status = item.direction === "outbound" && item.status
        ? h("p", { class: failedDelivery ? "item-status failed" : "item-status" },
          deliveryLabel(item.status), item.error_code ? ` (error ${item.error_code})` : "")
        : null;
      return h("li", { class: `item text ${item.direction === "inbound" ? "inbound" : "outbound"}` },
        h("div", { class: "item-head" }, h("span", { class: "item-who" }, senderLabel(item)), at),
        h("p", { class: "item-body" }, item.body || ""),
        status);
    }
    if (item.kind === "call") {
      const facts = [item.direction === "outbound" ? "Outgoing call" : "Incoming call"];
      if (item.duration_seconds !== undefined && item.duration_seconds !== null) facts.push(duration(item.duration_seconds));
      if (item.classification) facts.push(item.classification);
      const who = staffName(item.staff);
      const key = `call:${item.id}`;
      const transcript = Array.isArray(item.transcript) && item.transcript.length
        ? h("details", {
          open: state.openTranscripts.has(key),
          ontoggle: (event) => { if (event.target.open) state.openTranscripts.add(key); else state.openTranscripts.delete(key); },
        },
          h("summary", { "data-item-key": key }, "Transcript"),
          h("ol", { class: "transcript" }, item.transcript.map(transcriptLine)))
        : null;
      return h("li", { class: "item call" },
        h("div", { class: "item-head" }, h("span", { class: "item-who" }, facts.join(" · "), who ? ` (placed by ${who})` : ""), at),
        h("p", { class: "item-body" }, item.summary || "No summary."),
        transcript);
    }
    const who = staffName(item.staff);
    return h("li", { class: "item note" },
      h("div", { class: "item-head" }, h("span", { class: "item-who" }, who ? `Note (${who})` : "Note"), at),
      h("p", { class: "item-body" }, item.text || ""));
  }

  function transcriptLine(turn) {
    if (turn && typeof turn === "object") {
      const role = turn.role === "agent" ? "Agent" : turn.role === "user" ? "Customer" : String(turn.role || "");
      return h("li", {}, role ? h("strong", {}, `${role}: `) : null, String(turn.message ?? turn.text ?? ""));
    }
    return h("li", {}, String(turn));
  }

  // -- staying current --------------------------------------------------------------------

  function schedule(delay = POLL_MS) {
    if (state.stopped) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, delay);
  }

  function onVisible() {
    if (!document.hidden && !state.stopped) schedule(0);
  }

  async function poll() {
    if (state.stopped) return;
    if (document.hidden) {
      schedule();
      return;
    }
    try {
      const q = new URLSearchParams({ organization_id: state.lead.organization_id, limit: "1" });
      const answer = await request("GET", `leads?${q}`, { headers: state.etag ? { "If-None-Match": state.etag } : {} });
      if (state.stopped) return;
      const first = state.etag === null;
      if (answer.status !== 304) state.etag = answer.etag;
      if (answer.status !== 304 && !first) await refresh();
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      // A missed poll is retried on the next tick; the page stays as it is.
    }
    schedule();
  }

  async function refresh() {
    try {
      const [lead, timeline] = await Promise.all([
        request("GET", leadPath(id)),
        request("GET", leadPath(id, `/timeline?limit=${TIMELINE_PAGE}&transcripts=true`)),
      ]);
      if (state.stopped) return;
      state.lead = lead.data;
      if (!state.dirty) fillForm(lead.data);
      renderHeader();
      state.items = timeline.data.items || [];
      if (!state.older.length) state.next = timeline.data.next || null;
      renderTimeline();
      checkCallOutcome();
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      if (error instanceof ApiError && error.status === 404) notFound();
    }
  }
}
