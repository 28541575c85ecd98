"""The shared paging-cursor check (``api.http.decode_cursor``): the caller's partition, that query's keys."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.api.http import decode_cursor, encode_cursor
from chalicelib.domain.errors import BadRequest


def raw(**attributes: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(attributes).encode()).decode().rstrip("=")


TABLE = {"PK": "P#1", "SK": "S#1"}
GSI1 = {**TABLE, "GSI1PK": "REVIEW#p1", "GSI1SK": "2026#a"}
GSI2 = {**TABLE, "GSI2PK": "REVIEWP#p1#partner-a", "GSI2SK": "2026#a"}


@pytest.mark.parametrize(("attributes", "partition"), [
    (TABLE, ("PK", "P#1")), (GSI1, ("GSI1PK", "REVIEW#p1")), (GSI2, ("GSI2PK", "REVIEWP#p1#partner-a"))])
def test_a_cursor_of_the_table_or_either_index_round_trips(attributes: dict[str, str],
                                                            partition: tuple[str, str]) -> None:
    key = {k: {"S": v} for k, v in attributes.items()}
    assert decode_cursor(encode_cursor(key), partition) == key


@pytest.mark.parametrize(("attributes", "partition"), [
    (GSI2, ("GSI2PK", "REVIEWP#p1#partner-b")),  # another partner's queue
    (GSI2, ("GSI1PK", "REVIEW#p1")),  # the partner index's cursor on the operator's query
    (GSI1, ("GSI2PK", "REVIEWP#p1#partner-a")),
    ({**GSI1, "GSI2PK": "REVIEWP#p1#partner-a", "GSI2SK": "x"}, ("GSI2PK", "REVIEWP#p1#partner-a")),  # extra keys
    ({k: v for k, v in GSI2.items() if k != "GSI2SK"}, ("GSI2PK", "REVIEWP#p1#partner-a")),  # a key missing
    ({**TABLE, "GSI1PK": "x", "GSI1SK": "y"}, ("PK", "P#1")),
    ({"PK": "P#1"}, ("PK", "P#1")),
])
def test_a_cursor_outside_the_partition_or_with_other_keys_is_refused(attributes: dict[str, str],
                                                                      partition: tuple[str, str]) -> None:
    with pytest.raises(BadRequest) as refused:
        decode_cursor(raw(**attributes), partition)
    assert refused.value.code == "invalid_cursor"
