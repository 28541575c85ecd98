"""Shared fixtures: an in-process moto AWS, a fresh table per test, and an API client."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support import ApiClient

OPERATOR_KEY = "srf_op_test-operator-key-0123456789abcdefghijkl"
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_REGION": "eu-central-1",
    "SARAFAN_STAGE": "test",
    "SARAFAN_TABLE": "sarafan-test",
    "SARAFAN_SECRET_KEY": "test-master-secret",
    "SARAFAN_OPERATOR_KEY_SHA256": hashlib.sha256(OPERATOR_KEY.encode()).hexdigest(),
    "SARAFAN_PUBLIC_BASE_URL": "https://srf.test",
    "SARAFAN_SES_SENDER": "no-reply@sarafan.test",
}


def _share_botocore_data_loader() -> None:
    """One botocore data loader for every session the suite creates.

    Each test resets the clients (a new moto per test), and every new botocore session parsed
    ``endpoints.json`` and the service models again: the largest part of a functional test's setup in a
    profile (docs/tests.md has the measured total). The loader only caches parsed, read-only data files, so
    sharing it changes nothing else.
    """
    import functools

    import botocore.loaders
    import botocore.session

    if getattr(botocore.session.create_loader, "sarafan_shared", False):
        return
    shared = functools.lru_cache(maxsize=None)(botocore.loaders.create_loader)
    shared.sarafan_shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = shared  # type: ignore[assignment]


def _reuse_moto_kms_key_material() -> None:
    """moto makes an RSA-2048 private key for every KMS key, symmetric ones included, where it is never
    used: 0.1-0.3 s of CPU per test (each test creates its KMS key in a new moto). Symmetric keys share
    one; asymmetric key specs (which do sign with it) still get their own."""
    import functools

    from moto.kms import models

    original = models.generate_private_key
    if getattr(original, "sarafan_shared", False):
        return
    unused = functools.lru_cache(maxsize=None)(original)

    def generate_private_key(key_spec: str) -> Any:
        if str(key_spec).startswith(("RSA_", "ECC_")):
            return original(key_spec)
        return unused(key_spec)

    generate_private_key.sarafan_shared = True  # type: ignore[attr-defined]
    models.generate_private_key = generate_private_key  # type: ignore[assignment]


def _one_botocore_session_per_thread() -> None:
    """Each test starts new clients (a new moto), and every new botocore session registered its ~400
    built-in event handlers again: about a fifth of a functional test's setup. Sessions hold no state
    the tests vary (credentials and endpoints come from the same test environment; clients, which
    tests hook and fault-inject, are still created anew), so each thread keeps one, for the app's two
    users of sessions (PynamoDB's connection and ``chalicelib.aws``). Not ``botocore.session.get_session``
    itself: every ``boto3.Session`` registers its own handlers on the session it gets."""
    import botocore.session
    import pynamodb.connection.base

    from chalicelib import aws as app_clients

    if getattr(pynamodb.connection.base.get_session, "sarafan_shared", False):
        return
    local = threading.local()

    def shared_session(env_vars: Any = None) -> Any:
        if env_vars is not None:
            return botocore.session.get_session(env_vars)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = botocore.session.get_session()
        return session

    shared_session.sarafan_shared = True  # type: ignore[attr-defined]
    pynamodb.connection.base.get_session = shared_session  # type: ignore[attr-defined]
    app_clients._botocore_session = shared_session


def _reuse_moto_url_callbacks() -> None:
    """Every ``mock_aws`` start built moto's ~1,300 URL callbacks for the ``requests`` library anew (one
    object per AWS URL pattern and HTTP method, all alike): 2.7 of the 3.6 ms of CPU a new moto took.
    The same objects are registered again instead; botocore's calls never use them (moto answers those
    before they are sent)."""
    import moto.core.models as core

    original = core.CallbackResponse
    if getattr(original, "sarafan_shared", False):
        return
    made: dict[tuple[Any, ...], Any] = {}

    def callback_response(*, method: str, url: Any, callback: Any) -> Any:
        key = (method, url, callback)
        response = made.get(key)
        if response is None:
            response = made[key] = original(method=method, url=url, callback=callback)
        return response

    callback_response.sarafan_shared = True  # type: ignore[attr-defined]
    core.CallbackResponse = callback_response  # type: ignore[assignment, misc]


_share_botocore_data_loader()
_reuse_moto_kms_key_material()
_one_botocore_session_per_thread()
_reuse_moto_url_callbacks()


#: Tests that take seconds each (docs/tests.md), in this order before all others, so that the pytest
#: workers end on short tests: ``python3 infra/dev.py test`` runs ``--dist worksteal``, where a worker
#: whose queue is empty takes half of the other's, and a long test started last would keep one worker
#: running alone. Order only: every test still runs, and a file's tests stay together.
LONG_FIRST = (
    "tests/e2e/test_schemathesis.py",
    "tests/deploy/",
    "tests/e2e/test_local_run.py",
    "tests/functional/test_settlement_properties.py",
    "tests/browser/",
    "tests/e2e/",
    "tests/functional/test_storefront_snippet.py",
    "tests/functional/test_platform_fuzz.py",
    "tests/functional/test_bounded_reads.py",
    "tests/functional/test_analytics.py",
    "tests/functional/test_webhook_fuzz.py",
    "tests/functional/test_hostile_routes.py",
    "tests/functional/test_fraud_farm.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """The local run's engine adjustments before any test makes a botocore session: the in-process hop is a
    handler botocore copies into each session when it is made, and the suite keeps one session per thread,
    so a session made before ``apply`` (a test using ``mock_aws`` without the ``aws`` fixture) would lack the
    hop while the serializer skip (a class patch) applied to it: requests with empty bodies."""
    from infra import moto_tuning

    moto_tuning.apply()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))

    items.sort(key=rank)  # stable: the collected order otherwise


def reset_process_state() -> None:
    """Everything cached per process (settings, connections, clients, config cache), and the production ports
    wired with the tests' clock (``tests.support.CLOCK``) following the wall clock again."""
    import app  # noqa: F401  (importing the app wires its ports: done first, so the wiring below stays)
    from chalicelib import aws, config
    from chalicelib.services import envelope, ports, rules, secrets
    from chalicelib.store import cache, db
    from tests.support import CLOCK

    config.reset_settings()
    db.reset()
    aws.reset_clients()
    cache.clear()
    secrets.reset_master_key()
    rules.reset_cache()
    envelope.reset_cache()
    CLOCK.set(None)
    ports.wire(_ports_on_the_tests_clock)


def _ports_on_the_tests_clock() -> Any:
    from chalicelib.services import ports
    from tests.support import CLOCK

    return ports.production(clock=CLOCK)


def _no_dns(host: str) -> list[str]:
    raise OSError("no DNS in the test suite")


@pytest.fixture(autouse=True)
def no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook target checks never resolve real names in tests (a test that needs a name resolved
    replaces ``services.partner_webhooks.resolve`` with a table)."""
    from chalicelib.services import partner_webhooks

    monkeypatch.setattr(partner_webhooks, "resolve", _no_dns)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    reset_process_state()
    yield
    reset_process_state()


@pytest.fixture
def aws(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's in-process AWS with the Sarafan table and the KMS key for platform secrets.

    moto runs with the local run's adjustments (``infra/moto_tuning.py``), so the suite
    exercises the DynamoDB engine ``python3 infra/dev.py run`` uses.
    """
    from moto import mock_aws

    with mock_aws():
        monkeypatch.setenv("SARAFAN_KMS_KEY_ID", _provision())
        _read_settings()
        yield


def _provision() -> str:
    """Inside ``mock_aws``: the adjusted engine, the table, the SES sender; returns a new KMS key's id.

    The first time in a process through the API calls (``create_table``, ``verify_email_identity``,
    ``create_key``); later, a copy of the empty table those calls made goes into the new moto and the
    sender and key are made by moto's own backends: the same state without the SES and KMS clients and
    six round trips (a new moto with it: 42 ms of CPU before, 1.6 ms now; docs/tests.md).
    """
    from infra import moto_tuning

    moto_tuning.apply()
    if _copy_fits():
        key_id = _provision_in_backends()
        if key_id is not None:
            return key_id
    return _provision_through_api()


class _Provisioned:
    """What :func:`_provision_through_api` left in moto the first time: the empty table, and where."""

    table: Any = None
    account: str = ""
    region: str = ""


_PROVISIONED = _Provisioned()


def _provision_through_api() -> str:
    import copy

    from moto.dynamodb.models import dynamodb_backends

    from chalicelib import aws as aws_clients
    from chalicelib.store.tables import create_table

    create_table()
    account, region = _where_the_api_calls_go()
    table = dynamodb_backends[account][region].tables.get(os.environ.get("SARAFAN_TABLE", ""))
    aws_clients.client("ses").verify_email_identity(EmailAddress=TEST_ENV["SARAFAN_SES_SENDER"])
    key_id = str(aws_clients.client("kms").create_key(Description=KMS_KEY_DESCRIPTION)["KeyMetadata"]["KeyId"])
    if _PROVISIONED.table is None and table is not None and not table.items:
        _PROVISIONED.table = copy.deepcopy(table)
        _PROVISIONED.account, _PROVISIONED.region = account, region
    return key_id


KMS_KEY_DESCRIPTION = "sarafan test: platform secrets"


def _where_the_api_calls_go() -> tuple[str, str]:
    """(moto account, region) of the app's clients: moto's default account unless ``MOTO_ACCOUNT_ID``
    says otherwise, the settings' region (``chalicelib.config``)."""
    from moto.core import DEFAULT_ACCOUNT_ID

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
    return os.environ.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID, region


def _copy_fits() -> bool:
    """The copy is the table the API calls would make now (a test may have moved the table name, the
    region or the account)."""
    return (_PROVISIONED.table is not None and os.environ.get("SARAFAN_TABLE") == _PROVISIONED.table.name
            and _where_the_api_calls_go() == (_PROVISIONED.account, _PROVISIONED.region))


def _provision_in_backends() -> str | None:
    """:func:`_provision_through_api`'s state made directly in moto's backends (None: not possible)."""
    import copy

    from moto.dynamodb.models import dynamodb_backends
    from moto.kms.models import kms_backends
    from moto.ses.models import ses_backends

    from chalicelib.store.db import bind

    if not _copy_fits():
        return None
    account, region = _PROVISIONED.account, _PROVISIONED.region
    tables = dynamodb_backends[account][region].tables
    if tables:
        return None  # not a new moto
    tables[_PROVISIONED.table.name] = copy.deepcopy(_PROVISIONED.table)
    ses_backends[account][region].verify_email_identity(TEST_ENV["SARAFAN_SES_SENDER"])
    # The arguments moto's CreateKey handler passes for a call with only a description.
    key = kms_backends[account][region].create_key(None, None, None, KMS_KEY_DESCRIPTION, None, None, "AWS_KMS")
    bind()
    return str(key.id)


def _read_settings() -> None:
    from chalicelib import config

    config.reset_settings()
    # Read now: chalice.test.Client swaps in .chalice/config.json's environment while it runs.
    config.get_settings()


@contextmanager
def moto_aws() -> Iterator[None]:
    """What the ``aws_env`` and ``aws`` fixtures give a test, as a context manager (no function-scoped
    fixture): the test environment set and restored, a new moto AWS with the table and a KMS key.
    For a module-scoped fixture under a property test, with :func:`fresh_table` per example."""
    from moto import mock_aws

    names = [*TEST_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE", "SARAFAN_KMS_KEY_ID"]
    saved = {name: os.environ.get(name) for name in names}
    try:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(TEST_ENV)
        reset_process_state()
        with mock_aws():
            os.environ["SARAFAN_KMS_KEY_ID"] = _provision()
            _read_settings()
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_process_state()


@contextmanager
def fresh_table() -> Iterator[ApiClient]:
    """Inside :func:`moto_aws`: the table dropped and created again, every process cache emptied, and
    an API client. One per Hypothesis example, so no example sees another's data (a function-scoped
    fixture would be shared by every example of the test); a few milliseconds, not a new moto."""
    from app import app

    _new_table()
    _read_settings()
    yield ApiClient(app, OPERATOR_KEY)


def _new_table() -> None:
    """The table dropped and created again (as a copy of the empty one, see :func:`_provision`)."""
    import copy

    from chalicelib.store.db import Entity, bind
    from chalicelib.store.tables import create_table

    if not _copy_fits():
        if Entity.exists():
            Entity.delete_table()
        reset_process_state()
        create_table()
        return
    from moto.dynamodb.models import dynamodb_backends

    reset_process_state()
    tables = dynamodb_backends[_PROVISIONED.account][_PROVISIONED.region].tables
    tables[_PROVISIONED.table.name] = copy.deepcopy(_PROVISIONED.table)
    bind()


def table_snapshot() -> Any:
    """Inside :func:`moto_aws`, after :func:`fresh_table`: a copy of the table as it is now (a world a property
    test builds once), for :func:`restore_table` before each example."""
    import copy

    from moto.dynamodb.models import dynamodb_backends

    assert _copy_fits(), "table_snapshot needs the provisioned table (see _copy_fits)"
    return copy.deepcopy(dynamodb_backends[_PROVISIONED.account][_PROVISIONED.region].tables[_PROVISIONED.table.name])


def restore_table(snapshot: Any) -> None:
    """The table put back as :func:`table_snapshot` copied it, every process cache emptied: an example
    starts from the same world whatever the previous one stored (milliseconds for a small world)."""
    import copy

    from moto.dynamodb.models import dynamodb_backends

    from chalicelib.store.db import bind

    reset_process_state()
    dynamodb_backends[_PROVISIONED.account][_PROVISIONED.region].tables[_PROVISIONED.table.name] = (
        copy.deepcopy(snapshot))
    bind()


@contextmanager
def fresh_api() -> Iterator[ApiClient]:
    """:func:`moto_aws` and :func:`fresh_table` in one (a whole new moto: about half a second)."""
    with moto_aws(), fresh_table() as api:
        yield api


@pytest.fixture
def api(aws: None) -> ApiClient:
    from app import app

    return ApiClient(app, OPERATOR_KEY)


@pytest.fixture
def serialized_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's in-memory DynamoDB apply one request at a time, as real DynamoDB does.

    moto's conditional writes are check-then-write in Python and not thread-safe; real
    DynamoDB applies each request atomically. With one lock around moto's request handler,
    threads in a concurrency test can only race in our code, which is what the test is about.
    """
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


@pytest.fixture
def threadsafe_chalice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chalice keeps ``current_request`` on the shared app object; give each test thread its own.

    (Lambda runs one request per container at a time, so production never shares it.)
    """
    from chalice import Chalice

    local = threading.local()

    def getter(self: Any) -> Any:
        return getattr(local, "request", None)

    def setter(self: Any, value: Any) -> None:
        local.request = value

    monkeypatch.setattr(Chalice, "current_request", property(getter, setter), raising=False)


@pytest.fixture
def concurrent_requests(serialized_dynamodb: None, threadsafe_chalice: None) -> None:
    """Both of the above: what a test sending requests from several threads needs."""
