// Wording and formatting shared by the views: statuses, reasons, senders, dates.

export const STATUSES = ["new", "contacted", "qualified", "hot", "customer", "closed"];
export const SENTIMENTS = ["positive", "neutral", "negative"];
export const MAX_TEXT_CHARS = 1600;

const STATUS_LABELS = {
  new: "New",
  contacted: "Contacted",
  qualified: "Qualified",
  hot: "Hot",
  customer: "Customer",
  closed: "Closed",
};

const REASONS = {
  unanswered_text: "Unanswered text",
  fallback_sent: "Fallback text sent",
  delivery_failed: "Text not delivered",
  callback_requested: "Callback requested",
};

const SENDERS = {
  customer: "Customer",
  agent: "AI agent",
  fallback: "Automatic fallback",
  staff: "Staff",
  follow_up: "Follow-up",
};

const DELIVERY = {
  queued: "Queued",
  accepted: "Accepted",
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  received: "Received",
  undelivered: "Not delivered",
  failed: "Failed",
  canceled: "Canceled",
};

export function statusLabel(status) {
  return STATUS_LABELS[status] || String(status || "Unknown");
}

export function reasonLabel(reason) {
  return REASONS[reason] || String(reason || "Needs attention");
}

export function senderLabel(item) {
  const base = SENDERS[item.sender_kind] || (item.direction === "inbound" ? "Customer" : "Sent");
  const who = staffName(item.staff);
  return who ? `${base} (${who})` : base;
}

export function staffName(staff) {
  if (!staff) return "";
  return staff.email || staff.name || staff.sub || "";
}

export function deliveryLabel(status) {
  return DELIVERY[status] || String(status || "");
}

export function isFailedDelivery(status) {
  return status === "failed" || status === "undelivered";
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "numeric", minute: "2-digit",
});

/** "10:42 AM" today, else "Mar 3, 10:42 AM"; "" for nothing. */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeFormat.format(date) : dateFormat.format(date);
}

export function duration(seconds) {
  const total = Math.max(0, Math.round(Number(seconds) || 0));
  const minutes = Math.floor(total / 60);
  const rest = total % 60;
  return minutes ? `${minutes} min ${rest} s` : `${rest} s`;
}

/** Characters as the server counts them (code points, not UTF-16 units). */
export function charCount(text) {
  return Array.from(text || "").length;
}

export function thousands(n) {
  return Number(n).toLocaleString("en-US");
}

export function leadTitle(lead) {
  return (lead.customer_name && lead.customer_name.trim()) || lead.phone_number || "Unknown caller";
}
