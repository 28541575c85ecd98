"""Points: the ledger stage of the event pipeline (see ``stage``) and its parts."""

from chalicelib.services.ledger.reads import order_hash
from chalicelib.services.ledger.stage import LedgerStage

__all__ = ["LedgerStage", "order_hash"]
