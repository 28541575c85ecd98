"""Birthday gifts job: the program's gift, once per member and year, on the member's birthday.

For every program with ``settings.birthday_gift`` (the program listing, one partition), "today" is
the day in the program's time zone (``settings.notifications.time_zone``, UTC by default). The days
to grant are those after the watermark ``JOBS/BIRTHDAY#<program>`` up to today (at most
``domain.birthdays.CATCH_UP_DAYS`` back). For each day the job queries the month-day index
``BDAY#<program>#<MMDD>`` (``store.birthdays``; 28 February also reads ``0229`` in a non-leap year),
in pages of ``MEMBER_PAGE``, never a Scan, reads the page's profiles, balances and gift records in
one batched read, and for each member whose birthday counts (set at least ``birthday_min_age_days``
before the day) writes, in **one transaction**:

* the gift record ``MEMBER#<program>#<member>`` / ``BIRTHDAYGIFT#<year>`` with ``attribute_not_exists``
  (the business key: program, member, year; a rerun, or two runs at once, grant nothing twice);
* a check that the member's index entry still has the ``set_at`` read (a birthday changed meanwhile
  is decided again on the next page or run);
* the points (a ``reward`` entry, ``reason_code: birthday_gift``, funded by ``funded_by`` or the program)
  and the balance change;
* the partner's voucher through ``services.vouchers.issue_voucher_in`` (slot, head, voucher, pool alert),
  or, when the pool is empty or the offer disabled, ``fallback_points`` funded by that partner
  (``reason_code: offer_fallback``; without a fallback the record says ``pool_empty``);
* one ``birthday_gift`` outbox message (ru/en) naming the points and the voucher's code.

**Bounded and resumable.** One run reads at most ``max_pages`` pages over all programs; after every
page the watermark saves the day, the month-day partition and the Query's cursor, so a run cut short
(its page budget, a timeout, a crash) resumes where it stopped on the next run (hourly). A day is done
once read to its end, except today while ``birthday_min_age_days`` is 0 (a birthday set later today still
counts today, so every run reads today again; the batched read skips members already granted). Nothing
personal is logged: counts only, never a birthday.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib.domain import birthdays as bday
from chalicelib.domain import clock
from chalicelib.domain.settings import BirthdayGift
from chalicelib.logs import get_logger
from chalicelib.services import ports, vouchers
from chalicelib.services.outcomes import AlreadyProcessed, RetryEvent
from chalicelib.store import keys, tenancy_repo
from chalicelib.store.birthdays import BirthdayGiftItem, BirthdayJobStateItem, BirthdayPointerItem
from chalicelib.store.ledger import (
    KIND_REWARD,
    STATUS_AVAILABLE,
    BalanceDelta,
    BalanceItem,
    OutboxItem,
    day_of,
    new_entry,
    stable_id,
    stage_balance,
)
from chalicelib.store.members import MemberItem, batch_get
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import Transaction

log = get_logger("sarafan.birthdays")
PROGRAM_PAGE = 100
MEMBER_PAGE = 100
#: Pages (of ``MEMBER_PAGE`` members) one run reads over all programs; the rest waits for the next run.
MAX_PAGES_PER_RUN = 200
_ATTEMPTS = 5


class _Granted(Exception):
    """The gift record exists: this member's gift of the year was already decided."""


class _PointerChanged(Exception):
    """The birthday was changed or erased since the index was read."""


class _BalanceChanged(Exception):
    pass


@dataclass
class Totals:
    programs: int = 0
    pages: int = 0
    members: int = 0
    granted: int = 0
    points: int = 0
    vouchers: int = 0
    fallback: int = 0
    pool_empty: int = 0
    too_recent: int = 0
    already: int = 0
    skipped: int = 0
    unfinished: int = 0  # programs whose days are not all granted yet (page budget): continued next run

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class _Run:
    now: datetime
    budget: int
    totals: Totals = field(default_factory=Totals)
    pools: dict[tuple[str, str], vouchers.PoolView] = field(default_factory=dict)


# --------------------------------------------------------------------------- one member


def _message(tx: Transaction, program: ProgramItem, member: MemberItem, business_key: str, year: int,
             points: int, voucher: Any, now: datetime) -> None:
    from chalicelib.services.offers import value_of

    pid = program.program_id
    message_id = stable_id("msg", "birthday", pid, member.member_id, str(year))
    pk, sk = keys.outbox_message(pid, message_id)
    gpk, gsk = keys.gsi1_outbox_pending(day_of(now), clock.iso(now), message_id)
    params: dict[str, Any] = {"points": points}
    if voucher is not None:
        params |= {"voucher_id": voucher.voucher_id, "offer_id": voucher.offer_id, "partner_id": voucher.partner_id,
                   "offer_name": voucher.name, "offer_kind": voucher.kind, "code": voucher.code,
                   "expires_at": clock.iso(voucher.expires_at) if voucher.expires_at else None, **value_of(voucher)}
    tx.create(OutboxItem(
        PK=pk, SK=sk, GSI1PK=gpk, GSI1SK=gsk, program_id=pid, message_id=message_id, member_id=member.member_id,
        template="birthday_gift", locale=member.locale or program.default_locale, params=params,
        business_key=business_key, status="pending", created_at=now,
    ), on_fail=_Granted())


def _pool(run: _Run, program_id: str, gift: BirthdayGift, fresh: bool = False) -> vouchers.PoolView:
    assert gift.offer_partner_id and gift.offer_id
    key = (program_id, gift.offer_id)
    if fresh or key not in run.pools:
        run.pools[key] = vouchers.read_pool(program_id, gift.offer_partner_id, gift.offer_id)
    return run.pools[key]


def _advance_pool(pool: vouchers.PoolView) -> None:
    """After a commit: the shards this transaction took moved on; their next slot is unread (a later member
    on that shard reads the pool again when no read shard is left)."""
    for shard in pool.taken:
        head = pool.heads.get(shard)
        pool.slots.pop(shard, None)
        if head is not None:
            head.next = int(head.next or 0) + 1
            if head.remaining > 0:
                pool.unread.add(shard)
    pool.taken.clear()
    pool.alerted = False


def _stage_gift(tx: Transaction, run: _Run, program: ProgramItem, gift: BirthdayGift, day: date,
                pointer: BirthdayPointerItem, member: MemberItem, balance: BalanceItem | None) -> BirthdayGiftItem:
    pid, mid, now, year = program.program_id, member.member_id, run.now, day.year
    business_key = f"birthday|{mid}|{year}"
    pk, sk = keys.birthday_gift(pid, mid, year)
    record = BirthdayGiftItem(PK=pk, SK=sk, program_id=pid, member_id=mid, year=year, day=day.isoformat(),
                              outcome="granted", granted_at=now)
    tx.create(record, on_fail=_Granted())
    tx.check(BirthdayPointerItem, (pointer.PK, pointer.SK), BirthdayPointerItem.set_at == pointer.set_at,
             on_fail=_PointerChanged())
    credits: list[tuple[int, str | None, str, str]] = []  # (points, funder, reason_code, reason)
    if gift.points:
        credits.append((gift.points, gift.funded_by, "birthday_gift", "Birthday gift"))
    voucher = None
    if gift.offer_id:
        pool = _pool(run, pid, gift)
        voucher = vouchers.issue_voucher_in(
            tx, pool, program=program, member_id=mid, business_key=business_key, now=now, reason="Birthday gift",
            reason_code="birthday_gift", locale=member.locale, announce=False)
        if voucher is not None:
            record.voucher_id, record.offer_id = voucher.voucher_id, voucher.offer_id
            record.offer_partner_id = voucher.partner_id
        elif gift.fallback_points:
            record.outcome = "fallback"
            credits.append((gift.fallback_points, gift.offer_partner_id, "offer_fallback",
                            "Birthday gift (instead of the partner's offer: no code was left)"))
        else:
            record.outcome = "pool_empty"
    total = 0
    for points, funder, reason_code, reason in credits:
        entry_id = stable_id("le", "birthday", pid, mid, str(year), reason_code)
        tx.create(new_entry(pid, mid, entry_id, now, kind=KIND_REWARD, status=STATUS_AVAILABLE, points=points,
                            reason=reason, reason_code=reason_code, created_at=now, available_at=now,
                            funding_partner_id=funder, partner_id=funder, business_key=business_key,
                            reversed_points=0), on_fail=_Granted())
        total += points
    if total:
        stage_balance(tx, pid, mid, balance, BalanceDelta(available=total, earned=total), on_fail=_BalanceChanged())
        record.points = total
        record.funding_partner_id = credits[0][1] if len(credits) == 1 else None
        record.entry_id = stable_id("le", "birthday", pid, mid, str(year), credits[0][2])
    if total or voucher is not None:
        _message(tx, program, member, business_key, year, total, voucher, now)
    return record


def grant_member(run: _Run, program: ProgramItem, gift: BirthdayGift, day: date, pointer: BirthdayPointerItem,
                 member: MemberItem, balance: BalanceItem | None) -> str:
    """Grant one member's gift of ``day``'s year; the outcome (``granted`` | ``fallback`` | ``pool_empty`` |
    ``already`` | ``changed``)."""
    pid, mid = program.program_id, member.member_id
    for _ in range(_ATTEMPTS):
        tx = Transaction()
        try:
            record = _stage_gift(tx, run, program, gift, day, pointer, member, balance)
            tx.commit()
        except (_Granted, AlreadyProcessed):
            return "already"
        except _PointerChanged:
            return "changed"
        except RetryEvent:  # a lost race for a pool slot, or a shard whose next slot was not read
            _pool(run, pid, gift, fresh=True)
            continue
        except _BalanceChanged:
            try:
                got = BalanceItem.get(*keys.balance(pid, mid), consistent_read=True)
                balance = got if isinstance(got, BalanceItem) else None
            except DoesNotExist:
                balance = None
            continue
        if gift.offer_id:
            _advance_pool(_pool(run, pid, gift))
        run.totals.points += int(record.points or 0)
        run.totals.vouchers += 1 if record.voucher_id else 0
        return str(record.outcome)
    log.warning("birthday gift not granted after retries", extra={"program_id": pid, "member_id": mid})
    return "retry"


def grant_page(run: _Run, program: ProgramItem, gift: BirthdayGift, day: date,
               pointers: list[BirthdayPointerItem]) -> None:
    pid, totals = program.program_id, run.totals
    min_age = program.program_settings.birthday_min_age_days
    wanted = []
    for p in pointers:
        wanted += [keys.member(pid, p.member_id), keys.balance(pid, p.member_id),
                   keys.birthday_gift(pid, p.member_id, day.year)]
    items = batch_get(wanted)
    for p in pointers:
        totals.members += 1
        member = items.get(keys.member(pid, p.member_id))
        balance = items.get(keys.balance(pid, p.member_id))
        if isinstance(items.get(keys.birthday_gift(pid, p.member_id, day.year)), BirthdayGiftItem):
            totals.already += 1
            continue
        if not isinstance(member, MemberItem) or member.erased_at is not None:
            totals.skipped += 1
            continue
        if not bday.counts(p.set_at, day, min_age):
            totals.too_recent += 1
            continue
        outcome = grant_member(run, program, gift, day, p, member,
                               balance if isinstance(balance, BalanceItem) else None)
        if outcome in ("granted", "fallback", "pool_empty"):
            totals.granted += 1
            totals.fallback += outcome == "fallback"
            totals.pool_empty += outcome == "pool_empty"
        elif outcome == "already":
            totals.already += 1
        else:
            totals.skipped += 1


# --------------------------------------------------------------------------- one program


def _state(program_id: str) -> BirthdayJobStateItem | None:
    try:
        item = BirthdayJobStateItem.get(*keys.birthday_job_state(program_id), consistent_read=True)
    except DoesNotExist:
        return None
    return item if isinstance(item, BirthdayJobStateItem) else None


def _save(program_id: str, done_through: str | None, day: str | None, index: int,
          cursor: dict[str, Any] | None) -> None:
    pk, sk = keys.birthday_job_state(program_id)
    try:
        BirthdayJobStateItem(PK=pk, SK=sk, done_through=done_through, day=day, month_day_index=index,
                             cursor=cursor).save()
    except PutError:  # the next run redoes the page: every gift is idempotent
        log.warning("birthday watermark not saved", extra={"program_id": program_id})


def run_program(run: _Run, program: ProgramItem) -> bool:
    """Grant the program's days up to today within the run's page budget; ``True`` when all are done."""
    from chalicelib.notify import settings as notify_settings

    gift = program.program_settings.birthday_gift
    if gift is None:
        return True
    pid = program.program_id
    today = bday.local_today(run.now, notify_settings.of(program).zone)
    state = _state(pid)
    done_through = state.done_through if state else None
    for day in bday.days_to_run(date.fromisoformat(done_through) if done_through else None, today):
        resume = state is not None and state.day == day.isoformat()
        index = int(state.month_day_index or 0) if resume and state else 0
        cursor = state.cursor if resume and state else None
        month_days = bday.celebrated_month_days(day)
        while index < len(month_days):
            if run.budget <= 0:
                return False
            run.budget -= 1
            run.totals.pages += 1
            result = BirthdayPointerItem.query(keys.birthday_partition(pid, month_days[index]), limit=MEMBER_PAGE,
                                               last_evaluated_key=cursor)
            pointers = [p for p in result if isinstance(p, BirthdayPointerItem)]
            if pointers:
                grant_page(run, program, gift, day, pointers)
            cursor = result.last_evaluated_key
            if not cursor:
                index += 1
            _save(pid, done_through, day.isoformat(), index, cursor)
        # With ``birthday_min_age_days = 0`` a birthday set later today still counts today: today stays open and
        # every run reads it again (granted members are skipped by the batched read). Otherwise it is done.
        if day < today or program.program_settings.birthday_min_age_days > 0:
            done_through = day.isoformat()
        _save(pid, done_through, None, 0, None)
        state = None
    return True


def run(now: datetime | None = None, *, max_pages: int = MAX_PAGES_PER_RUN) -> dict[str, int]:
    """One run over every program with a birthday gift; the totals (counts only)."""
    job = _Run(now=now or ports.current().clock.now(), budget=max_pages)
    cursor = None
    while True:
        programs, cursor = tenancy_repo.list_programs(PROGRAM_PAGE, cursor)
        for program in programs:
            if program.program_settings.birthday_gift is None:
                continue
            job.totals.programs += 1
            if not run_program(job, program):
                job.totals.unfinished += 1
        if not cursor:
            break
    totals = job.totals.as_dict()
    log.info("birthday run", extra=totals)
    return totals
