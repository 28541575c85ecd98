"""Members and everything that points at them: identifiers, referral codes, coupons, invites.

One person is one member of a program across all its partners. They are found in
O(1) by code, email, phone or a partner's customer id through pointer items whose
keys hold only salted hashes of the identifier. Pointers also carry the member's
ancestry (referrer chain, nearest first), so one batched read of the pointers
tells the event pipeline every member whose state it must load next: multi-level
rewards never walk the chain item by item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)

from chalicelib.domain import identity as ident
from chalicelib.domain.clock import iso
from chalicelib.store import keys
from chalicelib.store.birthdays import stage_birthday
from chalicelib.store.db import Entity, IsoDateTimeAttribute

#: ``joined_via`` of members brought over by the member import (``services.importer``).
JOINED_VIA_IMPORT = "import"


#: The code an erased profile keeps (it resolves nowhere).
ERASED_CODE = "-"


class MemberItem(Entity, discriminator="member"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    code = UnicodeAttribute()
    name = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)  # canonical form, for notifications; never logged
    phone = UnicodeAttribute(null=True)  # E.164
    birthday = UnicodeAttribute(null=True)  # YYYY-MM-DD
    birthday_set_at = IsoDateTimeAttribute(null=True)
    customer_ids: MapAttribute[str, str] = MapAttribute(default=dict)  # {partner_id: partner's customer id}
    push_endpoints: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    #: Keys of this member's identity pointers, so ancestry changes update them all.
    pointer_keys: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    referrer_id = UnicodeAttribute(null=True)
    ancestors: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]  # nearest first, ≤ max depth
    attributed_at = IsoDateTimeAttribute(null=True)
    attribution_source = UnicodeAttribute(null=True)
    attribution_final = BooleanAttribute(default=False)
    acquisition = JSONAttribute(default=dict)  # {"channel": ..., "utm": {...}}
    tier = UnicodeAttribute(default="base")
    joined_at = IsoDateTimeAttribute()
    joined_via = UnicodeAttribute()  # "invite" | "signup" | "order" | "lead" | "api"
    #: Referral counters (the member as a referrer), updated in the transactions that change them.
    referral_signups = NumberAttribute(default=0)
    converted_referrals = NumberAttribute(default=0)
    #: The member's own paid orders (order.paid minus full cancellations is not tracked here).
    orders_count = NumberAttribute(default=0)
    #: Optimistic-concurrency version: every transaction that rewrites the profile checks it.
    revision = NumberAttribute(default=0)
    #: Set when the member's personal data was erased (``services.erasure``); the profile keeps ids and counts.
    erased_at = IsoDateTimeAttribute(null=True)
    #: The signup was counted in analytics by the transaction that created the member (the member import's):
    #: the stream's analytics consumer does not count it again.
    signup_counted = BooleanAttribute(null=True)

    @property
    def has_referees(self) -> bool:
        return int(self.referral_signups or 0) > 0


class PointerBase(Entity, discriminator="pointer_base"):
    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    ancestors: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]


class IdentityItem(PointerBase, discriminator="identity"):
    kind = UnicodeAttribute()  # "email" | "phone" | "customer_id"


class CodeItem(PointerBase, discriminator="code"):
    code = UnicodeAttribute()
    first_name = UnicodeAttribute(null=True)  # shown on landing pages ("Olga invites you")
    vanity = BooleanAttribute(default=False)


class CouponItem(PointerBase, discriminator="coupon"):
    coupon = UnicodeAttribute()


class PendingInviteItem(Entity, discriminator="pending_invite"):
    """"This friend was invited by that referrer": matched when the friend signs up or buys."""

    program_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    referrer_id = UnicodeAttribute()
    code = UnicodeAttribute()
    invited_at = IsoDateTimeAttribute()
    #: The referrer's ancestry when invited, so the pipeline knows the chain after one read.
    ancestors: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    expires_at_epoch = NumberAttribute(null=True)  # DynamoDB TTL removes stale invites
    #: Invite-time fraud checks (``services.landing.signals``): a rejecting reason code
    #: (``self_referral_<kind>`` or ``self_referral_upline:<kind>``), hold reason codes and their descriptions.
    risk_reject = UnicodeAttribute(null=True)
    risk_holds: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    risk_matched: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]


class InviteRefItem(Entity, discriminator="invite_ref"):
    """In the referrer's partition (``keys.invite_ref``): a pending invite through her link, or a visitor's profile
    naming her code (``acquisition.ref``), keyed by the visitor's identifier (her erasure deletes the invite and takes
    the code off the profile, her export lists it; the visitor's erasure deletes it).

    Written with the visitor's profile when it names her code (no TTL: the profile names it as long as it exists),
    else with the invite, expiring with it (``expires_at_epoch``: DynamoDB's TTL; nothing needs it after)."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    expires_at_epoch = NumberAttribute(null=True)


class LinkItem(Entity, discriminator="link"):
    """Short-link code → program and member, for ``/r/{code}`` (see ``keys.short_link``)."""

    program_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    code = UnicodeAttribute()


@dataclass(frozen=True)
class IdentityRef:
    kind: str  # "email" | "phone" | "customer_id"
    value_hash: str

    def pointer_key(self, program_id: str) -> tuple[str, str]:
        return keys.identity(program_id, self.kind, self.value_hash)

    def invite_key(self, program_id: str) -> tuple[str, str]:
        return keys.pending_invite(program_id, self.kind, self.value_hash)


def identity_refs(
    program_id: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    customer_id: tuple[str, str] | None = None,
) -> list[IdentityRef]:
    """Hashed identifiers of a person, strongest first (customer id, email, phone).

    ``email`` is canonical (``normalize_email``); matching uses the provider-aware
    match key so ``o.lga+shop@gmail.com`` and ``olga@googlemail.com`` are one person.
    ``customer_id`` is ``(partner_id, partner's customer id)``.
    """
    refs: list[IdentityRef] = []
    if customer_id is not None:
        value = ident.customer_id_value(*customer_id)
        refs.append(IdentityRef("customer_id", ident.identity_hash(program_id, "customer_id", value)))
    if email:
        refs.append(IdentityRef("email", ident.identity_hash(program_id, "email", ident.email_match_key(email))))
    if phone:
        refs.append(IdentityRef("phone", ident.identity_hash(program_id, "phone", phone)))
    return refs


def key_str(key: tuple[str, str]) -> str:
    return f"{key[0]}|{key[1]}"


def key_from_str(text: str) -> tuple[str, str]:
    pk, _, sk = text.partition("|")
    return pk, sk


def identity_pointer_parts(program_id: str, text: str) -> tuple[str, str] | None:
    """``(kind, value hash)`` of an identity pointer key (``IDENT#<program>#<kind>#<hash>``), else None: a
    profile's ``pointer_keys`` also hold its code (``CODE#…``) and coupon (``COUPON#…``) keys."""
    pk = key_from_str(text)[0]
    prefix = f"IDENT#{program_id}#"
    if not pk.startswith(prefix):
        return None
    kind, sep, value_hash = pk[len(prefix):].rpartition("#")
    if not sep or not kind or not value_hash:
        return None
    return kind, value_hash


def batch_get(item_keys: Iterable[tuple[str, str]], *, consistent: bool = False) -> dict[tuple[str, str], Entity]:
    """Read any mix of entities in one ``BatchGetItem`` per 100 keys (PynamoDB retries unprocessed keys);
    ``consistent``: strongly consistent reads (twice the read units), else eventually consistent."""
    unique = list(dict.fromkeys(item_keys))
    if not unique:
        return {}
    return {(item.PK, item.SK): item for item in Entity.batch_get(unique, consistent_read=consistent or None)}


def new_member(
    program_id: str,
    member_id: str,
    code: str,
    *,
    joined_at: Any,
    joined_via: str,
    name: str | None = None,
    locale: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    birthday: str | None = None,
    birthday_set_at: Any = None,
    customer_ids: dict[str, str] | None = None,
    acquisition: dict[str, Any] | None = None,
    refs: Sequence[IdentityRef] = (),
) -> MemberItem:
    pk, sk = keys.member(program_id, member_id)
    return MemberItem(
        PK=pk,
        SK=sk,
        program_id=program_id,
        member_id=member_id,
        code=code,
        name=name,
        locale=locale,
        email=email,
        phone=phone,
        birthday=birthday,
        birthday_set_at=(birthday_set_at or joined_at) if birthday else None,
        customer_ids=customer_ids or {},
        pointer_keys=[key_str(r.pointer_key(program_id)) for r in refs],
        joined_at=joined_at,
        joined_via=joined_via,
        acquisition=acquisition or {},
    )


def pointer_items(member: MemberItem, refs: Sequence[IdentityRef]) -> list[IdentityItem]:
    items = []
    for ref in refs:
        pk, sk = ref.pointer_key(member.program_id)
        items.append(IdentityItem(PK=pk, SK=sk, program_id=member.program_id, member_id=member.member_id,
                                  kind=ref.kind, ancestors=list(member.ancestors or [])))
    return items


def code_item(member: MemberItem, *, vanity: bool = False) -> CodeItem:
    pk, sk = keys.referral_code(member.program_id, member.code)
    first_name = (member.name or "").split(" ")[0] or None
    return CodeItem(PK=pk, SK=sk, program_id=member.program_id, member_id=member.member_id, code=member.code,
                    first_name=first_name, vanity=vanity, ancestors=list(member.ancestors or []))


def link_item(member: MemberItem) -> LinkItem:
    pk, sk = keys.short_link(member.code)
    return LinkItem(PK=pk, SK=sk, program_id=member.program_id, member_id=member.member_id, code=member.code)


def referrals_index(member: MemberItem) -> None:
    """Put the member on its referrer's referral list (GSI1), or take it off."""
    if member.referrer_id:
        member.GSI1PK, member.GSI1SK = keys.gsi1_referrals_of(
            member.program_id, member.referrer_id, iso(member.joined_at), member.member_id)
    else:
        member.GSI1PK = member.GSI1SK = None


def stage_member_creation(tx: Any, member: MemberItem, refs: Sequence[IdentityRef], on_conflict: Exception) -> None:
    """Create a member with its identity pointers, code and short link in ``tx``.

    Every item is created with ``attribute_not_exists``: a concurrent creation of the same
    person (a pointer taken) or a code collision (code or link taken) fails the whole
    transaction with ``on_conflict``, and the caller reads again.
    """
    referrals_index(member)
    tx.create(member, on_fail=on_conflict)
    for pointer in pointer_items(member, refs):
        tx.create(pointer, on_fail=on_conflict)
    tx.create(code_item(member), on_fail=on_conflict)
    tx.create(link_item(member), on_fail=on_conflict)  # /r/{code}; also makes the code unique deployment-wide
    if member.birthday and member.birthday_set_at is not None:
        stage_birthday(tx, member.program_id, member.member_id, None, member.birthday, member.birthday_set_at)


class _Exists(Exception):
    pass


class _Erased(Exception):
    pass


def unerased(*, must_exist: bool = False) -> Any:
    """The condition on a member's profile that her erasure has not started (the erasure's start transaction sets
    ``erased_at``): carried by every write that attaches personal data or a code to her. A profile that does not
    exist passes, unless ``must_exist``."""
    condition = MemberItem.erased_at.does_not_exist()
    return (Entity.PK.exists() & condition) if must_exist else condition


def check_unerased(tx: Any, program_id: str, member_id: str, on_fail: Exception, *, must_exist: bool = False) -> None:
    """A ``ConditionCheck`` in ``tx`` that the member's erasure has not started (``unerased``)."""
    tx.check(MemberItem, keys.member(program_id, member_id), unerased(must_exist=must_exist), on_fail=on_fail)


def create_unless_erased(item: Entity, program_id: str, member_id: str) -> str:
    """Create ``item`` about a member (an outbox message, a partner webhook delivery, ...) in one transaction with a
    ``ConditionCheck`` that the member's erasure has not started (``erased_at`` not on the profile; a profile that
    does not exist passes). ``"created"``, ``"exists"`` (an item at that key: a replayed record) or ``"erased"``
    (nothing written)."""
    from chalicelib.store.transact import Transaction

    tx = Transaction()
    tx.create(item, on_fail=_Exists())
    check_unerased(tx, program_id, member_id, _Erased())
    try:
        tx.commit()
    except _Exists:
        return "exists"
    except _Erased:
        return "erased"
    return "created"
