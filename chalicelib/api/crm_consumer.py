"""The asynchronous CRM fetch consumer: one Lambda fed by the SQS queue (see ``services.crm_fetch``).

In AWS it is its own function (``@on_sqs_message``) with a dead-letter queue after 5 receives
(``infra/resources.yaml``); locally the same :func:`consume` is driven by the local run. A failed
message is re-raised so SQS retries it (batch size 1: one CRM event per invocation).
"""

from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint

crm_consumer = Blueprint(__name__)
QUEUE = "sarafan-crm-fetch"


def consume(body: str) -> dict[str, Any]:
    from chalicelib.services import crm_fetch

    return crm_fetch.handle(json.loads(body))


@crm_consumer.on_sqs_message(queue=QUEUE, batch_size=1, name="crm_fetch_consumer")
def crm_fetch_consumer(event: Any) -> None:
    for record in event:
        consume(record.body)
