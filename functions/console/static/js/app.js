// The console's entry point: sign-in, the header, the banner for unexpected errors, and the
// hash router (#/ is the inbox, #/leads/<id> a lead), so a lead can be opened by its URL.

import * as auth from "./auth.js";
import { SessionEnded } from "./api.js";
import { h, replace, setText, focusHeading } from "./dom.js";
import { showInbox } from "./inbox.js";
import { showLead } from "./lead.js";

const main = document.getElementById("main");
let current = null; // the shown view: {stop()}
let flash = ""; // a message for the next view ("Lead erased")

function showBanner(message) {
  setText(document.getElementById("banner-text"), message);
  document.getElementById("banner").hidden = false;
}

function hideBanner() {
  document.getElementById("banner").hidden = true;
}

// An error nothing else caught still leaves a message, never a blank page.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof SessionEnded) return;
  showBanner(`Something went wrong: ${event.reason && event.reason.message ? event.reason.message : event.reason}`);
});
window.addEventListener("error", (event) => {
  showBanner(`Something went wrong: ${event.message || "unexpected error"}`);
});

function messagePage(title, text, action) {
  stopView();
  replace(main, h("section", { class: "panel centered" }, h("h1", {}, title), h("p", {}, text), action || null));
  focusHeading(main);
}

function signInButton(label = "Sign in") {
  return h("button", { type: "button", onclick: () => auth.signIn(location.hash) }, label);
}

function stopView() {
  if (current && current.stop) current.stop();
  current = null;
}

const context = {
  navigate(hash, message = "") {
    flash = message;
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  takeFlash() {
    const message = flash;
    flash = "";
    return message;
  },
  user: null,
};

function route() {
  const hash = location.hash || "#/";
  if (!hash.startsWith("#/")) return; // an in-page anchor (the skip link), not a view
  stopView();
  hideBanner();
  const lead = /^#\/leads\/([^/?#]+)$/.exec(hash);
  try {
    if (lead) {
      current = showLead(main, decodeURIComponent(lead[1]), context);
    } else if (hash === "#/" || hash.startsWith("#/?")) {
      current = showInbox(main, context, new URLSearchParams(hash.slice(hash.indexOf("?") + 1 || hash.length)));
    } else {
      messagePage("Page not found", "There is no such page in the console.", h("a", { href: "#/", class: "button" }, "Go to the inbox"));
    }
  } catch (error) {
    messagePage("Something went wrong", String(error && error.message ? error.message : error), h("a", { href: "#/", class: "button" }, "Go to the inbox"));
  }
}

function showUser(user) {
  setText(document.getElementById("who"), user.email && user.name !== user.email ? `${user.name} · ${user.email}` : user.name);
  const button = document.getElementById("sign-out");
  button.hidden = false;
  button.addEventListener("click", () => {
    stopView();
    auth.signOut();
  });
}

async function start() {
  document.getElementById("banner-close").addEventListener("click", hideBanner);
  try {
    await auth.loadConfig();
  } catch (error) {
    messagePage("The console cannot start", error.message, h("button", { type: "button", onclick: () => location.reload() }, "Reload"));
    return;
  }
  try {
    await auth.completeSignIn();
  } catch (error) {
    messagePage("Not signed in", error.message, signInButton("Sign in again"));
    return;
  }
  if (!auth.idToken()) {
    if (auth.justSignedOut()) {
      messagePage("You are signed out", "Sign in to see your store's leads.", signInButton());
    } else {
      messagePage("Signing in…", "Taking you to the sign-in page.", signInButton());
      auth.signIn(location.hash);
    }
    return;
  }
  context.user = auth.user();
  showUser(context.user);
  window.addEventListener("hashchange", route);
  route();
}

start();
