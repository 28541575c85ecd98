"""Member-facing notification services: preferences, push devices, delivery log, unsubscribe, suppression."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.domain import clock
from chalicelib.domain.errors import MemberErased, NotFound, ValidationFailed, field_error
from chalicelib.notify import tokens
from chalicelib.notify.port import Notifier, PermanentSendError, TransientSendError
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.members import MemberItem, check_unerased
from chalicelib.store.notify import NotificationLogItem, NotifyStateItem

CHANNELS = ("email", "sms", "push")
MAX_DEVICES = 10

PREFERENCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {name: {"type": "boolean"} for name in CHANNELS},
}
DEVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["platform", "token"],
    "properties": {
        "platform": {"enum": ["fcm", "apns"]},
        "token": {"type": "string", "minLength": 8, "maxLength": 4096, "pattern": r"^[A-Za-z0-9_:\-.]+$"},
        "device_id": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"^[A-Za-z0-9_\-.]+$"},
    },
}


def _member(principal: Principal, program_id: str, member_id: str) -> MemberItem:
    principal.require_server_key()
    principal.require_program(program_id)
    tenancy_repo.get_program(program_id)
    try:
        item = MemberItem.get(*keys.member(program_id, member_id))
    except DoesNotExist:
        item = None
    if not isinstance(item, MemberItem):
        raise NotFound("Member not found", details={"member_id": member_id})
    return item


def _state_item(program_id: str, member_id: str) -> NotifyStateItem:
    return NotifyStateItem(*keys.notify_state(program_id, member_id))


def _ensure_ids(program_id: str, member_id: str) -> list[Any]:
    S = NotifyStateItem
    return [S.entity.set(S),  # type: ignore[arg-type]  # upserted: the discriminator too
            S.program_id.set(program_id), S.member_id.set(member_id), S.updated_at.set(ports.current().clock.now())]


def _read_state(program_id: str, member_id: str) -> NotifyStateItem | None:
    try:
        item = NotifyStateItem.get(*keys.notify_state(program_id, member_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, NotifyStateItem) else None


def preferences_view(state: NotifyStateItem | None) -> dict[str, Any]:
    prefs = (state.preferences if state else None) or {}
    return {"preferences": {name: prefs.get(name) is not False for name in CHANNELS}}


def set_channel(program_id: str, member_id: str, changes: dict[str, bool]) -> NotifyStateItem:
    """One ``UpdateItem`` setting only the channels named (concurrent changes of others are kept)."""
    item = _state_item(program_id, member_id)
    actions = _ensure_ids(program_id, member_id)
    for name, enabled in changes.items():
        actions.append(getattr(NotifyStateItem, f"{name}_off").set(not enabled))
    item.update(actions=actions)
    return item


def update_preferences(principal: Principal, program_id: str, member_id: str,
                       data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``: valid ``PREFERENCES_SCHEMA`` (the route validates it)."""
    _member(principal, program_id, member_id)
    return preferences_view(set_channel(program_id, member_id, dict(data)))


def get_preferences(principal: Principal, program_id: str, member_id: str) -> dict[str, Any]:
    _member(principal, program_id, member_id)
    return preferences_view(_read_state(program_id, member_id))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def register_device(principal: Principal, program_id: str, member_id: str, data: Mapping[str, Any],
                    notifier: Notifier) -> dict[str, Any]:
    """Create or refresh the member's SNS endpoint for a push token (re-enabled if it was disabled).
    ``data``: valid ``DEVICE_SCHEMA`` (the route validates it). An erased member's (erasure started) is a 409
    ``member_erased``, checked before SNS is called and again in the write (an endpoint made meanwhile is deleted)."""
    if _member(principal, program_id, member_id).erased_at is not None:
        raise MemberErased(member_id)
    token_hash = _token_hash(data["token"])
    device_id = data.get("device_id") or token_hash[:16]
    state = _read_state(program_id, member_id)
    devices = list((state.devices if state else None) or [])
    existing = next((d for d in devices if d.get("device_id") == device_id or d.get("token_hash") == token_hash), None)
    try:
        arn = notifier.register_device(data["platform"], data["token"], existing.get("endpoint_arn") if existing else None)
    except PermanentSendError as exc:
        raise ValidationFailed("The push token was refused", details={"errors": [field_error("$.token", exc.code)]},
                               code="push_token_refused") from exc
    except TransientSendError as exc:
        from chalicelib.domain.errors import ServiceUnavailable

        raise ServiceUnavailable("Push registration is unavailable; retry", details={"code": exc.code}) from exc
    entry = {"device_id": device_id, "platform": data["platform"], "endpoint_arn": arn, "token_hash": token_hash,
             "enabled": True, "updated_at": clock.iso(ports.current().clock.now())}

    def with_entry(read: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [d for d in read if d.get("device_id") != device_id and d.get("token_hash") != token_hash
                and d.get("endpoint_arn") != arn]
        return [*kept[-(MAX_DEVICES - 1):], entry]

    try:
        _change_devices(program_id, member_id, devices, with_entry, upsert=True, unerased=True)
    except MemberErased:
        notifier.delete_device(arn)  # the endpoint holds the token: it goes with her
        raise
    return {"device": {k: entry[k] for k in ("device_id", "platform", "enabled", "updated_at")}}


#: A device list changed by someone else between our read and our write: read again this often.
DEVICE_ATTEMPTS = 4


class _DevicesChanged(Exception):
    pass


def _change_devices(program_id: str, member_id: str, read: list[dict[str, Any]] | None,
                    change: Any, *, upsert: bool, unerased: bool = False) -> None:
    """Write ``change(devices)`` conditioned on the list still being what was read (a registration and a
    delivery dropping a dead endpoint at the same time must not lose either change); with ``unerased``, and on the
    member's erasure not having started (one transaction; ``MemberErased`` if it has)."""
    from pynamodb.exceptions import UpdateError

    from chalicelib.store.transact import Transaction

    S = NotifyStateItem
    devices = read
    for _ in range(DEVICE_ATTEMPTS):
        if devices is None:
            state = _read_state(program_id, member_id)
            if state is None and not upsert:
                return
            devices = list((state.devices if state else None) or [])
        new = change(devices)
        if new == devices:
            return
        unchanged = (S.devices == devices) if devices else (S.devices.does_not_exist() | (S.devices == []))
        actions = [*(_ensure_ids(program_id, member_id) if upsert else []), S.devices.set(new)]
        condition = unchanged if upsert else (S.PK.exists() & unchanged)
        if unerased:
            tx = Transaction()
            tx.update(_state_item(program_id, member_id), actions, condition, on_fail=_DevicesChanged())
            check_unerased(tx, program_id, member_id, MemberErased(member_id), must_exist=True)
            try:
                tx.commit()
                return
            except _DevicesChanged:
                devices = None  # changed meanwhile: read again
                continue
        try:
            _state_item(program_id, member_id).update(actions=actions, condition=condition)
            return
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            devices = None  # changed meanwhile: read again
    from chalicelib.domain.errors import ServiceUnavailable

    raise ServiceUnavailable("The member's devices are being changed concurrently; retry")


def drop_device(program_id: str, member_id: str, endpoint_arn: str) -> None:
    """A permanent push failure (endpoint disabled/invalid): stop using the endpoint until re-registered."""
    _change_devices(program_id, member_id, None,
                    lambda read: [d for d in read if d.get("endpoint_arn") != endpoint_arn], upsert=False)


def suppress(program_id: str, member_id: str, email_hash: str) -> None:
    S = NotifyStateItem
    item = _state_item(program_id, member_id)
    state = _read_state(program_id, member_id)
    if state is not None and email_hash in (state.suppressed or []):
        return
    item.update(actions=[*_ensure_ids(program_id, member_id),
                         S.suppressed.set((S.suppressed | []).append([email_hash]))])


def notification_log(principal: Principal, program_id: str, member_id: str, limit: int,
                     cursor: dict[str, Any] | None) -> dict[str, Any]:
    _member(principal, program_id, member_id)
    pk, prefix = keys.notification_log_prefix(program_id, member_id)
    result = NotificationLogItem.query(pk, NotificationLogItem.SK.startswith(prefix), limit=limit,
                                       last_evaluated_key=cursor, scan_index_forward=False)
    items = [_log_view(i) for i in result if isinstance(i, NotificationLogItem)]
    return {"items": items, "next_cursor": result.last_evaluated_key}


def _log_view(item: NotificationLogItem) -> dict[str, Any]:
    deliveries = item.deliveries or []
    return {
        "message_id": item.message_id, "template": item.template, "locale": item.locale, "status": item.status,
        "attempts": int(item.attempts or 0), "last_error": item.last_error, "subject": item.subject,
        "channels": [{"channel": d.get("channel"), "status": d.get("status"), "recipient": d.get("recipient"),
                      "provider_id": d.get("provider_id"), "error": d.get("error")} for d in deliveries],
        "merged": list(item.merged or []), "created_at": item.created_at, "finished_at": item.finished_at,
    }


def unsubscribe(token: str) -> dict[str, Any]:
    """One-click unsubscribe (RFC 8058): the signed token names program, member and channel."""
    parsed = tokens.verify(token)
    if parsed is None:
        raise NotFound("Unknown or invalid unsubscribe link", code="invalid_token")
    program_id, member_id, channel = parsed
    if channel not in CHANNELS:
        raise NotFound("Unknown or invalid unsubscribe link", code="invalid_token")
    program = tenancy_repo.get_program(program_id)
    try:
        member = MemberItem.get(*keys.member(program_id, member_id))
    except DoesNotExist:
        member = None
    if member is not None:
        set_channel(program_id, member_id, {channel: False})
    locale = (member.locale if isinstance(member, MemberItem) and member.locale else None) or program.default_locale
    return {"program": program.name, "channel": channel, "locale": locale}
