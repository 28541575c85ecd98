"""Pure rewards engine: a versioned declarative rules document in, postings out.

No boto3/pynamodb/chalice here, no clocks, no randomness, integers only. The pipeline reads
state in one batch, calls ``evaluate`` (or ``reverse`` for refunds) and writes the result in one
DynamoDB transaction.
"""

from chalicelib.domain.l10n import format_money, format_rate  # the wording lives in domain.l10n
from chalicelib.domain.rewards.engine import (
    add_months,
    base_amount,
    evaluate,
    month_key,
    percent_points,
    reverse,
)
from chalicelib.domain.rewards.models import (
    Amount,
    Ancestor,
    CounterDelta,
    EngineEvent,
    Evaluation,
    OfferRef,
    PartnerOverride,
    PostedEntry,
    Posting,
    ProgramCounters,
    Recipient,
    Recurring,
    Reversal,
    Rule,
    RulesDoc,
    Skip,
    Subject,
    Tier,
    Trigger,
    VoucherGrant,
)
from chalicelib.domain.rewards.schema import RULES_SCHEMA, load_rules, parse_rules

__all__ = [
    "RULES_SCHEMA",
    "Amount",
    "Ancestor",
    "CounterDelta",
    "EngineEvent",
    "Evaluation",
    "OfferRef",
    "PartnerOverride",
    "PostedEntry",
    "Posting",
    "ProgramCounters",
    "Recipient",
    "Recurring",
    "Reversal",
    "Rule",
    "RulesDoc",
    "Skip",
    "Subject",
    "Tier",
    "Trigger",
    "VoucherGrant",
    "add_months",
    "base_amount",
    "evaluate",
    "format_money",
    "format_rate",
    "load_rules",
    "month_key",
    "parse_rules",
    "percent_points",
    "reverse",
]
