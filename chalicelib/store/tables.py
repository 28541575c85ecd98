"""Create the single table from the models (local run, tests; production uses infra/)."""

from __future__ import annotations

from chalicelib.store.db import Entity, bind, raw_client

#: Epoch-seconds attribute DynamoDB's TTL deletes expired items by (rate-limit windows...).
TTL_ATTRIBUTE = "expires_at_epoch"


def create_table(table_name: str | None = None) -> None:
    bind(table_name)
    if not Entity.exists():
        Entity.create_table(wait=True, billing_mode="PAY_PER_REQUEST")
        raw_client().update_time_to_live(
            TableName=Entity.Meta.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
