// The staff API, on the console's own origin one level up (/console/ -> /leads...). Every call
// carries the ID token; a 401 sends the user to sign-in with their place kept.

import * as auth from "./auth.js";

const API_BASE = new URL("../", location.href);

/** An answer that is not 2xx/304, with the API's own message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

/** The session is over and the page is going to sign-in: callers just stop. */
export class SessionEnded extends Error {}

/**
 * One request. Returns {status, etag, data}; 304 has no data. Throws ApiError (with the API's
 * message) or SessionEnded.
 */
export async function request(method, path, { body, headers = {} } = {}) {
  const token = auth.idToken();
  if (!token) {
    auth.expired();
    throw new SessionEnded("signing in again");
  }
  const init = {
    method,
    headers: { Accept: "application/json", Authorization: `Bearer ${token}`, ...headers },
    // The page does its own conditional requests (If-None-Match); the HTTP cache must not.
    cache: "no-store",
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(new URL(path, API_BASE), init);
  } catch {
    throw new ApiError(0, "The server cannot be reached. Check the connection and try again.");
  }
  if (response.status === 401) {
    auth.expired();
    throw new SessionEnded("signing in again");
  }
  const etag = response.headers.get("ETag");
  if (response.status === 304 || response.status === 204) return { status: response.status, etag, data: null };
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data && typeof data.message === "string" && data.message) || `The server answered ${response.status}.`;
    throw new ApiError(response.status, message, data);
  }
  return { status: response.status, etag, data };
}

export function leadPath(id, rest = "") {
  return `leads/${encodeURIComponent(id)}${rest}`;
}

/** Idempotency-Key for one user action, so a retried click does not send twice. */
export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}
