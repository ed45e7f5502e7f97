// The inbox: leads needing attention first (the API's order), search, status filter, a store
// switcher for members who see more than one store, and conditional polling: every ~3 s the
// same query goes out with If-None-Match, and an unchanged inbox answers 304 at no cost.

import { request, ApiError, SessionEnded } from "./api.js";
import { h, replace, setText, focusHeading } from "./dom.js";
import { STATUSES, statusLabel, reasonLabel, when, leadTitle } from "./format.js";

export const POLL_MS = 3000;
const SEARCH_DELAY_MS = 300;
const PAGE = 50;
const MAX_PAGE = 100;

export function showInbox(main, context, params) {
  const state = {
    q: params.get("q") || "",
    status: params.get("status") || "",
    store: params.get("store") || "",
    attention: params.get("attention") === "true",
    leads: [],
    next: null,
    etag: null,
    stopped: false,
    timer: null,
    searchTimer: null,
    stores: new Map(), // organization id -> label
  };
  const user = context.user || { stores: [], owner: false };
  for (const id of user.stores) state.stores.set(id, storeLabel(id));

  const statusLine = h("p", { class: "muted", role: "status", "aria-live": "polite" }, "Loading leads…");
  const errorLine = h("p", { class: "error", role: "alert", hidden: true });
  const list = h("ul", { class: "leads", "aria-label": "Leads" });
  const more = h("button", { type: "button", class: "secondary", hidden: true, onclick: loadMore }, "Show more leads");

  const search = h("input", {
    id: "inbox-q", type: "search", name: "q", value: state.q, autocomplete: "off",
    placeholder: "Name or phone", oninput: () => {
      clearTimeout(state.searchTimer);
      state.searchTimer = setTimeout(() => changed({ q: search.value.trim() }), SEARCH_DELAY_MS);
    },
  });
  const status = h("select", { id: "inbox-status", name: "status", onchange: () => changed({ status: status.value }) },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === state.status }, statusLabel(s))));
  const store = h("select", { id: "inbox-store", name: "store", onchange: () => changed({ store: store.value }) });
  const storeField = h("div", { hidden: true }, h("label", { for: "inbox-store" }, "Store"), store);
  const attention = h("input", {
    id: "inbox-attention", type: "checkbox", checked: state.attention,
    onchange: () => changed({ attention: attention.checked }),
  });

  const flash = context.takeFlash();
  replace(main,
    h("h1", {}, "Inbox"),
    flash ? h("p", { class: "success", role: "status" }, flash) : null,
    h("form", {
      class: "filters", role: "search", "aria-label": "Find leads",
      onsubmit: (event) => { event.preventDefault(); clearTimeout(state.searchTimer); changed({ q: search.value.trim() }); },
    },
      h("div", {}, h("label", { for: "inbox-q" }, "Search by name or phone"), search),
      h("div", {}, h("label", { for: "inbox-status" }, "Status"), status),
      storeField,
      h("label", { class: "check", for: "inbox-attention" }, attention, "Needs attention only")),
    statusLine, errorLine, list, more);
  focusHeading(main);
  renderStores();

  function query(limit = PAGE, next = null) {
    const q = new URLSearchParams();
    if (state.q) q.set("q", state.q);
    if (state.status) q.set("status", state.status);
    if (state.store) q.set("organization_id", state.store);
    if (state.attention) q.set("attention", "true");
    q.set("limit", String(limit));
    if (next) q.set("next", next);
    return `leads?${q}`;
  }

  function changed(update) {
    Object.assign(state, update);
    state.etag = null; // another query: the old ETag says nothing about it
    const kept = new URLSearchParams();
    if (state.q) kept.set("q", state.q);
    if (state.status) kept.set("status", state.status);
    if (state.store) kept.set("store", state.store);
    if (state.attention) kept.set("attention", "true");
    // The filters live in the URL (back and reload keep them); replaceState fires no hashchange.
    history.replaceState(null, "", `#/${kept.toString() ? `?${kept}` : ""}`);
    load();
  }

  async function load() {
    clearTimeout(state.timer);
    const limit = Math.min(MAX_PAGE, Math.max(PAGE, state.leads.length));
    try {
      const answer = await request("GET", query(limit), {
        headers: state.etag ? { "If-None-Match": state.etag } : {},
      });
      if (state.stopped) return;
      hideError();
      if (answer.status !== 304) {
        state.etag = answer.etag;
        state.leads = answer.data.leads || [];
        state.next = answer.data.next || null;
        render();
      }
    } catch (error) {
      if (error instanceof SessionEnded || state.stopped) return;
      showError(error);
    }
    schedule();
  }

  async function loadMore() {
    if (!state.next) return;
    more.disabled = true;
    try {
      const answer = await request("GET", query(PAGE, state.next));
      if (state.stopped) return;
      state.leads = state.leads.concat(answer.data.leads || []);
      state.next = answer.data.next || null;
      render();
    } catch (error) {
      if (!(error instanceof SessionEnded)) showError(error);
    } finally {
      more.disabled = false;
    }
  }

  function schedule() {
    if (state.stopped) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      if (document.hidden) schedule(); // nobody is looking: ask when the tab is back
      else load();
    }, POLL_MS);
  }

  function onVisible() {
    if (!document.hidden && !state.stopped) load();
  }
  document.addEventListener("visibilitychange", onVisible);

  function render() {
    const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.leadId : null;
    for (const lead of state.leads) {
      if (lead.organization_id && !state.stores.has(lead.organization_id)) {
        state.stores.set(lead.organization_id, lead.organization_name || storeLabel(lead.organization_id));
      }
    }
    renderStores();
    replace(list, state.leads.map(leadRow));
    const count = state.leads.length;
    const filtered = state.q || state.status || state.attention;
    setText(statusLine, count === 0
      ? (filtered ? "No leads match." : "No leads yet.")
      : `${count}${state.next ? "+" : ""} lead${count === 1 ? "" : "s"}${filtered ? " match" : ""}`);
    more.hidden = !state.next;
    if (focusedId) {
      const again = list.querySelector(`a[data-lead-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
  }

  function renderStores() {
    const many = user.owner || state.stores.size > 1;
    storeField.hidden = !many;
    if (!many) return;
    const options = [h("option", { value: "" }, user.owner ? "All stores" : "All my stores")];
    for (const [id, label] of state.stores) options.push(h("option", { value: id, selected: id === state.store }, label));
    if (state.store && !state.stores.has(state.store)) options.push(h("option", { value: state.store, selected: true }, storeLabel(state.store)));
    replace(store, options);
  }

  function showError(error) {
    const text = error instanceof ApiError ? error.message : `The inbox could not be loaded: ${error.message || error}`;
    setText(errorLine, text);
    errorLine.hidden = false;
    if (!state.leads.length) setText(statusLine, "");
  }

  function hideError() {
    errorLine.hidden = true;
  }

  load();
  return {
    stop() {
      state.stopped = true;
      clearTimeout(state.timer);
      clearTimeout(state.searchTimer);
      document.removeEventListener("visibilitychange", onVisible);
    },
  };
}

function storeLabel(id) {
  return `Store ${String(id).slice(0, 8)}`;
}

function leadRow(lead) {
  const attention = lead.attention;
  const badges = [h("span", { class: "badge" }, statusLabel(lead.status))];
  if (lead.human_control) badges.push(h("span", { class: "badge human" }, "Staff"));
  if (lead.opted_out_at) badges.push(h("span", { class: "badge opted-out" }, "Opted out"));
  return h("li", {},
    h("a", { class: attention ? "lead-link attention" : "lead-link", href: `#/leads/${encodeURIComponent(lead.id)}`, "data-lead-id": lead.id },
      h("span", { class: "lead-name" }, leadTitle(lead)),
      h("span", { class: "lead-when" }, when(lead.last_activity_at || lead.last_contact_at || lead.updated_at)),
      h("span", { class: "lead-phone" }, lead.customer_name ? lead.phone_number : "", " ", badges),
      attention
        ? h("span", { class: "lead-reason" }, `Needs attention: ${reasonLabel(attention.reason)}${attention.since ? ` · since ${when(attention.since)}` : ""}`)
        : null,
      lead.last_summary ? h("span", { class: "lead-preview" }, lead.last_summary) : null));
}
