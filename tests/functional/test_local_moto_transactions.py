"""The local run's faster moto TransactWriteItems (infra/moto_transactions.py) keeps DynamoDB's semantics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pynamodb.attributes import NumberAttribute

from chalicelib.domain.errors import Conflict
from chalicelib.store.db import Entity
from chalicelib.store.transact import Transaction
from infra import moto_transactions
from tests.support import ApiClient


@pytest.fixture
def fast_transactions(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto.dynamodb.models import DynamoDBBackend

    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", DynamoDBBackend.transact_write_items)
    moto_transactions.install()
    assert getattr(DynamoDBBackend.transact_write_items, "_sarafan", False)
    yield


class Counter(Entity, discriminator="test_counter"):
    n = NumberAttribute(default=0)


def read(pk: str) -> int | None:
    try:
        return int(Counter.get(pk, "X").n)
    except Counter.DoesNotExist:
        return None


def test_all_or_nothing_with_the_failed_operation_named(fast_transactions: None) -> None:
    tx = Transaction()
    tx.create(Counter(PK="a", SK="X", n=1))
    tx.create(Counter(PK="b", SK="X", n=2))
    tx.commit()
    assert (read("a"), read("b")) == (1, 2)
    failing = Transaction()
    failing.update(Counter(PK="a", SK="X"), [Counter.n.add(10)])
    failing.create(Counter(PK="c", SK="X", n=3))
    taken = Conflict("b exists", code="b_taken")
    failing.create(Counter(PK="b", SK="X", n=9), on_fail=taken)
    with pytest.raises(Conflict) as caught:
        failing.commit()
    assert caught.value is taken
    assert (read("a"), read("b"), read("c")) == (1, 2, None)  # nothing applied
    ok = Transaction()
    ok.update(Counter(PK="a", SK="X"), [Counter.n.add(10)], Counter.n == 1)
    ok.delete(Counter(PK="b", SK="X"))
    ok.check(Counter, ("a", "X"), Entity.PK.exists())  # a check and a write on one item: refused below
    with pytest.raises(Exception):  # noqa: B017 - moto's ValidationException, as DynamoDB's
        ok.commit()
    assert (read("a"), read("b")) == (1, 2)
    fine = Transaction()
    fine.update(Counter(PK="a", SK="X"), [Counter.n.add(10)], Counter.n == 1)
    fine.delete(Counter(PK="b", SK="X"))
    fine.commit()
    assert (read("a"), read("b")) == (11, None)


def test_the_member_import_and_erasure_run_the_same(fast_transactions: None, api: ApiClient) -> None:
    from chalicelib.domain import clock
    from tests.functional import test_data_rights_erasure as erasure_tests
    from tests.functional import test_data_rights_import as import_tests
    from tests.functional.test_ledger_support import utc

    clock.freeze(utc("2026-01-15T12:00:00Z"))  # the modules' autouse clock
    import_tests.test_import_creates_members_balances_and_referrers_and_reports_bad_rows(api)
    erasure_tests.test_after_erasure_no_item_holds_the_members_personal_data_and_every_amount_is_unchanged(api)
