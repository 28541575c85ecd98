"""Outcomes of a failed transaction condition that the pipeline handles itself.

Stages attach these as ``on_fail`` to the operations they add to the event's
transaction (see ``store.transact.Transaction``); ``services.pipeline`` catches them.
"""

from chalicelib.domain.records import ReadAgain


class RetryEvent(ReadAgain):
    """A concurrent writer changed what was read: read again and decide again."""


class AlreadyProcessed(Exception):
    """Another delivery of the same business fact committed first: answer with its stored result."""
