"""Event handlers of the notification capability: the table's one stream consumer, SES feedback, sweeps.

Each becomes its own Lambda (own IAM policy in .chalice/policy-<stage>-*.json, see
.chalice/config.json ``lambda_functions``). Names and ARNs are placeholders that
infra/resources.yaml replaces when packaging (the stream ARN is only known once the table
exists); ``SARAFAN_TABLE_STREAM_ARN`` may set it for ``chalice deploy``.
"""

from __future__ import annotations

import os
from typing import Any

from chalice import Blueprint, Rate

streams = Blueprint(__name__)

#: Replaced in the packaged template by !GetAtt SarafanTable.StreamArn (infra/resources.yaml).
STREAM_ARN = os.environ.get(
    "SARAFAN_TABLE_STREAM_ARN", "arn:aws:dynamodb:eu-central-1:123456789012:table/sarafan/stream/placeholder")
#: Replaced in the packaged template by the stack's topic; ``infra/dev.py deploy`` (two stacks) sets
#: ``SARAFAN_SES_FEEDBACK_TOPIC`` to the data stack's ``sarafan-<stage>-ses-feedback``.
SES_FEEDBACK_TOPIC = os.environ.get("SARAFAN_SES_FEEDBACK_TOPIC", "sarafan-ses-feedback")


@streams.on_dynamodb_record(stream_arn=STREAM_ARN, batch_size=100, starting_position="TRIM_HORIZON",
                            name="table_stream")
def table_stream(event: Any) -> dict[str, Any]:
    """The one consumer of the table's stream; handlers per item kind in notify.dispatcher."""
    from chalicelib.notify import dispatcher

    return dispatcher.dispatch(event.to_dict().get("Records", []))


@streams.on_sns_message(topic=SES_FEEDBACK_TOPIC, name="ses_feedback")
def ses_feedback(event: Any) -> dict[str, Any]:
    from chalicelib.notify import feedback

    return feedback.handle(event.message)


@streams.schedule(Rate(5, unit=Rate.MINUTES), name="notify_sweep",
                  description="Deliver notifications still pending past the grace period (provider outages, leases)")
def notify_sweep(event: Any) -> dict[str, Any]:
    from chalicelib.notify import sweep

    return sweep.run_sweep()


@streams.schedule(Rate(1, unit=Rate.DAYS), name="sleeping_reminders",
                  description="Reminders for members with available points and no activity for N days")
def sleeping_reminders(event: Any) -> dict[str, Any]:
    from chalicelib.notify import sweep

    return sweep.run_reminders()
