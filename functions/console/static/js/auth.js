// Sign-in: the authorization code flow with PKCE (S256) against config.json's endpoints, which
// are Cognito's managed login in AWS and the local issuer under `make run` (docs/CONSOLE.md).
// The ID token lives in sessionStorage: this tab only, gone when the tab closes.

const SESSION = "console.session";
const FLOW = "console.signin";
const PLACE = "console.place";
const SIGNED_OUT = "console.signedOut";
// A token this close to its expiry is treated as expired (clock skew, a slow request).
const EXPIRY_MARGIN_S = 60;

let config = null;

export class SignInError extends Error {}

/** Load config.json (where to sign in); its message names what is missing. */
export async function loadConfig() {
  let response;
  try {
    response = await fetch("config.json", { cache: "no-store" });
  } catch {
    throw new SignInError("The console cannot reach the server. Check the connection and reload.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new SignInError(body.message || `The sign-in settings could not be loaded (${response.status}).`);
  }
  config = body;
  return config;
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function challengeFor(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Go to the sign-in page; `place` (a #/ hash) is where the user comes back to. */
export async function signIn(place = location.hash) {
  const verifier = randomString(48);
  const state = randomString(24);
  sessionStorage.setItem(FLOW, JSON.stringify({ verifier, state }));
  if (place && place.startsWith("#/")) sessionStorage.setItem(PLACE, place);
  sessionStorage.removeItem(SIGNED_OUT);
  const query = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: config.scope,
    state,
    code_challenge: await challengeFor(verifier),
    code_challenge_method: "S256",
  });
  location.assign(`${config.authorize_url}?${query}`);
}

/**
 * Finish a sign-in when the URL carries ?code=&state= (or ?error=): trade the code for tokens,
 * then drop the query from the address bar and return to the kept place. True when it did.
 */
export async function completeSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  const flow = JSON.parse(sessionStorage.getItem(FLOW) || "null");
  sessionStorage.removeItem(FLOW);
  const place = sessionStorage.getItem(PLACE) || "#/";
  sessionStorage.removeItem(PLACE);
  history.replaceState(null, "", location.pathname + place);
  if (params.has("error")) {
    throw new SignInError(`Sign-in failed: ${params.get("error_description") || params.get("error")}`);
  }
  if (!flow || flow.state !== params.get("state")) {
    throw new SignInError("Sign-in did not complete (the answer does not match this tab's request). Sign in again.");
  }
  let response;
  try {
    response = await fetch(config.token_url, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: config.client_id,
        code: params.get("code"),
        redirect_uri: config.redirect_uri,
        code_verifier: flow.verifier,
      }),
      cache: "no-store",
    });
  } catch {
    throw new SignInError("The sign-in service cannot be reached. Check the connection and sign in again.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.id_token) {
    throw new SignInError(`Sign-in failed: ${body.error_description || body.error || body.message || response.status}`);
  }
  const claims = decodeClaims(body.id_token);
  const expiresAt = claims.exp || Math.floor(Date.now() / 1000) + Number(body.expires_in || 3600);
  sessionStorage.setItem(SESSION, JSON.stringify({ idToken: body.id_token, expiresAt }));
  return true;
}

/** The claims of a JWT, for display only: the API checks the token itself. */
export function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION) || "null");
  } catch {
    return null;
  }
}

/** The ID token, or null when there is none or it has expired. */
export function idToken() {
  const current = session();
  if (!current || !current.idToken) return null;
  if (current.expiresAt - EXPIRY_MARGIN_S <= Date.now() / 1000) return null;
  return current.idToken;
}

/** Who is signed in: name, email, and the stores their groups name. */
export function user() {
  const token = idToken();
  if (!token) return null;
  const claims = decodeClaims(token);
  let groups = claims["cognito:groups"] || [];
  if (typeof groups === "string") groups = groups.replace(/^\[|\]$/g, "").split(/[\s,]+/).filter(Boolean);
  const stores = groups.filter((g) => g.startsWith("org-")).map((g) => g.slice(4));
  return {
    name: claims.name || claims["cognito:username"] || claims.email || "Signed in",
    email: claims.email || "",
    owner: groups.includes("owners"),
    stores,
  };
}

/** The session ended (401 or expired): sign in again, keeping the place. */
export function expired() {
  sessionStorage.removeItem(SESSION);
  signIn(location.hash);
}

/** Forget the tokens and end the sign-in domain's session; it sends the user back here. */
export function signOut() {
  sessionStorage.removeItem(SESSION);
  sessionStorage.removeItem(PLACE);
  sessionStorage.setItem(SIGNED_OUT, "1");
  const query = new URLSearchParams({ client_id: config.client_id, logout_uri: config.redirect_uri });
  location.assign(`${config.logout_url}?${query}`);
}

/** Whether this tab has just signed out (then the page offers sign-in instead of redirecting). */
export function justSignedOut() {
  return sessionStorage.getItem(SIGNED_OUT) === "1";
}
