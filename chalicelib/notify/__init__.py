"""Notifications: the outbox written by the ledger (and the stream sources) delivered by SES/SNS.

* ``dispatcher``: the one DynamoDB Streams consumer of the table, handlers registered per item kind;
* ``sources``: this capability's handlers (outbox messages; friend joined; points released; spent);
* ``delivery``: claim → decide → send → finish, exactly once per message as far as SES/SNS allow;
* ``port``: the SES/SNS port, its AWS adapter and an in-memory fake;
* ``render`` + ``templates/``: ru/en templates; ``kinds``: which template a message becomes;
* ``members``: preferences, devices, delivery log, unsubscribe; ``feedback``: SES bounces/complaints;
* ``sweep``: the scheduled pick-up of messages still pending (and the sleeping-member reminders).
See docs/notifications.md.
"""
