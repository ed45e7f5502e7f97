"""SMS replies (design section 3.2a): jobs, the agent conversation, Twilio sends, outcomes.

Inside the VPC the SMS processor decides and emits a :class:`~leadlookup.replies.jobs.ReplyJob`
carrying everything the reply needs; outside the VPC the responder talks to the agent and to
Twilio (no database), and its :class:`~leadlookup.replies.jobs.ReplyOutcome` comes back through
a queue to be stored as an outbound message.
"""
