"""Opt-out: the keywords Twilio acts on and what they change on a lead (their one home).

Twilio answers its keywords itself and stops delivering to a number that sent STOP until it
sends START; a lead's ``opted_out_at`` mirrors that, so the agent never answers or texts an
opted-out number and staff see why.
"""

from __future__ import annotations

# The two changes a text can make to a lead's opt-out state.
OUT = "out"
IN = "in"
# Twilio's default keywords (a whole body, trimmed, any case).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
# Twilio answers these itself too (and they change nothing): the agent stays out.
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# With Advanced Opt-Out, Twilio classifies the message itself (custom keywords included).
_OPT_OUT_TYPES = {"STOP": OUT, "START": IN, "HELP": None}
# Twilio's "Attempt to send to unsubscribed recipient": a STOP we never saw (another keyword,
# another channel) learnt from a refused send; the lead is marked opted out.
TWILIO_UNSUBSCRIBED = 21610


def opt_change(opt_out_type: str | None, body: str | None) -> str | None:
    """:data:`OUT` for an opt-out keyword, :data:`IN` for an opt-in one, else None."""
    classified = (opt_out_type or "").strip().upper()
    if classified in _OPT_OUT_TYPES:
        return _OPT_OUT_TYPES[classified]
    keyword = (body or "").strip().upper()
    if keyword in OPT_OUT_KEYWORDS:
        return OUT
    if keyword in OPT_IN_KEYWORDS:
        return IN
    return None


def is_keyword(body: str, change: str | None) -> bool:
    """Whether Twilio answers this text itself (an opt-out, opt-in or help keyword)."""
    return change is not None or body.strip().upper() in HELP_KEYWORDS
