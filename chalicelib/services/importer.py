"""Member import from another loyalty system: a CSV chunk → members, opening balances, referrers.

Operator only. Each row is written in one transaction (which it may share with other rows, below):
the import marker of the row's member (``IMPORT#<program>#member#<member>``, created with
``attribute_not_exists``), the member with its pointers, code and link
(``store.members.stage_member_creation``) or the pointers of the identifiers an existing member did
not have yet, the referrer's signup counter, and the opening balance as an ``import`` ledger entry
with the balance update. So a row is written whole or not at all, and re-running an import (or a
chunk, or a corrected file naming the people by other identifiers) changes nothing: a person
imported before is skipped (a bad row when it asks for another opening balance). Markers of the
earlier code (keyed by the row's strongest identifier) are still read. A person who is already a
member gets the opening balance and their new identifiers; their profile and referrer stay as they
are. Rows naming one person twice in a chunk (an identifier repeated, or one existing member named by
different identifiers), or two members in one row, are bad rows; so is a row
naming an erased person (their identifier's tombstone), unless the import includes them, and so is a row
naming a member whose erasure has started (her profile's ``erased_at``: as read, or a condition in the row's
transaction).

Reads are batched and strongly consistent (an erasure swaps a pointer for its tombstone in one transaction:
a consistent read sees one of them): one ``BatchGetItem`` round for every pointer, tombstone, earlier-style marker,
code and referrer of the chunk, one for the balances, markers and profiles of existing members (and
one for earlier-style markers of existing members found without a marker). Rows are written in file order, so a referrer
imported earlier in the same file is found, and several rows share one transaction (up to
``GROUP_ITEMS`` items) while they touch different items. Each row's operations keep their own
conditions, whose failure names the row (``_RowConflict.line``): a group whose transaction is
cancelled loses only the row its cancellation reason points at (written again on its own after a
fresh read, reported as a bad row, or counted as already imported) and the rest of the group is
committed again, so an offending row neither half-writes nor holds back its neighbours. While a
group's transaction is in flight the next group is staged (``PIPELINED``; undone and staged again
if the one in flight is cancelled), so the chunk's own work overlaps DynamoDB's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.domain.codes import generate_code
from chalicelib.domain.ids import new_id
from chalicelib.domain.member_import import ImportRow, RowError, duplicates, parse
from chalicelib.logs import get_logger
from chalicelib.services import ports
from chalicelib.services.auth import Principal
from chalicelib.store import import_items, keys, tenancy_repo
from chalicelib.store.data_rights import ErasedIdentityItem, ImportRowItem
from chalicelib.store.db import Entity
from chalicelib.store.import_items import NewMember
from chalicelib.store.ledger import BalanceDelta, BalanceItem, new_entry, stable_id, stage_balance
from chalicelib.store.members import (
    JOINED_VIA_IMPORT,
    CodeItem,
    IdentityItem,
    IdentityRef,
    MemberItem,
    batch_get,
    check_unerased,
    identity_pointer_parts,
    identity_refs,
    key_str,
    new_member,
    pointer_items,
    stage_member_creation,
    unerased,
)
from chalicelib.store.notify import NotifyStateItem
from chalicelib.store.tenancy import ProgramItem
from chalicelib.store.transact import MAX_TRANSACTION_ITEMS, Transaction

if TYPE_CHECKING:
    from chalicelib.analytics.store import Increment

log = get_logger("sarafan.import")

KIND_IMPORT = "import"
CHUNK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["csv"],
    "properties": {
        "csv": {"type": "string", "description": "A chunk of the file: the header row, then up to 1000 rows"},
        "first_line": {"type": "integer", "minimum": 2, "description": "File line number of the first data row"},
        "partner_id": {"type": "string", "maxLength": 64, "description": "Whose customer ids the file holds"},
        "dry_run": {"type": "boolean", "description": "Check the rows, write nothing"},
        "include_erased": {"type": "boolean", "description": "Enrol again people whose data was erased (default: "
                                                             "such a row is a bad row)"},
    },
}
_ATTEMPTS = 3
#: Items per transaction when rows are written together (DynamoDB allows 100).
GROUP_ITEMS = 90
#: False: each group is staged only once the one before it is committed (tests compare both ways).
PIPELINED = True
#: False: every row through PynamoDB's models (tests compare both paths' writes).
RAW_ROWS = True
OPENING_REASON = "Opening balance imported from another program"


class _RowConflict(Exception):
    """A condition of one row's operations failed; ``line`` names the row (``None``: the row being written alone)."""

    def __init__(self, line: int | None = None) -> None:
        super().__init__(line)
        self.line = line


class _AlreadyImported(_RowConflict):
    pass


class _Retry(_RowConflict):
    """A pointer, code or balance changed since read (or a generated code collided): read the row again."""


class _ReferrerErased(_RowConflict):
    """The row's referrer's erasure has started (``erased_at`` on her profile, conditioned on in the transaction
    adding her signup): the row is a bad row, nothing of it written."""


def referrer_being_erased(row: ImportRow) -> _RowFailed:
    column = "referrer_code" if row.referrer_code else "referrer_customer_id"
    return _RowFailed(column, "the referrer's data is being erased: an import attaches no friend to her")


@dataclass
class _Referrer:
    member_id: str
    ancestors: list[str]


@dataclass
class _Staged:
    row: ImportRow
    tx: Transaction
    marker: ImportRowItem
    created: NewMember | None
    refs: list[IdentityRef]
    #: The new member's signup counters (analytics), written in the transaction that creates it.
    signup: list[Increment] = field(default_factory=list)
    #: Pointers the row adds to an existing member (identifiers they did not have yet).
    linked: list[IdentityItem] = field(default_factory=list)


@dataclass
class ChunkResult:
    rows: int = 0
    imported: int = 0
    existing: int = 0
    skipped: int = 0
    points: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: Rows taken out of a cancelled group transaction (written alone or reported); not in the answer.
    group_retries: int = 0

    def view(self) -> dict[str, Any]:
        return {"rows": self.rows, "imported": self.imported, "existing_members": self.existing,
                "already_imported": self.skipped, "opening_points": self.points,
                "errors": [e.view() for e in sorted(self.errors, key=lambda e: e.line)]}


def import_chunk(principal: Principal, program_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``: valid ``CHUNK_SCHEMA``; the caller is the operator (both the route's contract)."""
    program = tenancy_repo.get_program(program_id)
    partner_id = data.get("partner_id")
    if partner_id:
        tenancy_repo.get_partner(program_id, partner_id)
    rows, errors = parse(data["csv"], first_line=int(data.get("first_line", 2)),
                         phone_region="RU" if program.default_locale == "ru" else "US", has_partner=bool(partner_id))
    result = ChunkResult(rows=len(rows) + len(errors))
    rows, repeated = duplicates(rows)
    result.errors = [*errors, *repeated]
    if data.get("dry_run"):
        return {**result.view(), "dry_run": True}
    _Chunk(program, partner_id, result, include_erased=bool(data.get("include_erased"))).write(rows)
    log.info("import chunk", extra={"program_id": program_id, "rows": result.rows, "imported": result.imported,
                                    "errors": len(result.errors)})
    return {**result.view(), "dry_run": False}


class _Chunk:
    def __init__(self, program: ProgramItem, partner_id: str | None, result: ChunkResult, *,
                 include_erased: bool = False) -> None:
        self.program = program
        self.include_erased = include_erased
        self.pid = program.program_id
        self.partner_id = partner_id
        self.result = result
        self.max_depth = program.program_settings.max_depth
        self.items: dict[tuple[str, str], Entity] = {}
        self.now = ports.current().clock.now()
        self._refs: dict[int, list[IdentityRef]] = {}
        self._named_by: dict[int, str] = {}  # line -> the existing member the row names (``name``)
        self._lines_of: dict[str, set[int]] = {}  # member -> the lines naming them

    # -- reads ---------------------------------------------------------------------

    def refs(self, row: ImportRow) -> list[IdentityRef]:
        """The row's hashed identifiers (computed once per row: a salted hash each)."""
        refs = self._refs.get(id(row))
        if refs is None:
            customer = (self.partner_id, row.customer_id) if row.customer_id and self.partner_id else None
            refs = self._refs[id(row)] = identity_refs(self.pid, email=row.email, phone=row.phone,
                                                        customer_id=customer)
        return refs

    def marker_key(self, member_id: str) -> tuple[str, str]:
        """The import marker of a member: one opening balance per member, whichever identifiers name them."""
        return keys.import_row(self.pid, f"member#{member_id}")

    def legacy_marker_key(self, refs: list[IdentityRef]) -> tuple[str, str]:
        """The marker the importer wrote before markers were per member: keyed by the row's strongest identifier."""
        return keys.import_row(self.pid, f"{refs[0].kind}#{refs[0].value_hash}")

    def legacy_markers_of(self, profile: MemberItem) -> list[tuple[str, str]]:
        """The earlier markers for a member's identifiers, from the identity pointer keys on their profile
        (``pointer_keys``, which also hold their code and coupon keys: those name no marker)."""
        out = []
        for text in profile.pointer_keys or []:
            parts = identity_pointer_parts(self.pid, text)
            if parts is not None:
                out.append(keys.import_row(self.pid, f"{parts[0]}#{parts[1]}"))
        return out

    def tombstone_key(self, ref: IdentityRef) -> tuple[str, str]:
        return keys.erased_identity(self.pid, ref.kind, ref.value_hash)

    def referrer_key(self, row: ImportRow) -> tuple[str, str] | None:
        if row.referrer_code:
            return keys.referral_code(self.pid, row.referrer_code)
        if row.referrer_customer_id and self.partner_id:
            return identity_refs(self.pid, customer_id=(self.partner_id, row.referrer_customer_id))[0].pointer_key(
                self.pid)
        return None

    def read(self, rows: list[ImportRow]) -> None:
        """Read (again) what ``rows`` depend on, in batched ``BatchGetItem`` rounds: their identifiers' pointers
        and tombstones, the earlier-style marker of their strongest identifier, codes and referrers; then, of the
        members found, the balance, the import marker and the profile; then, only for members found without a
        marker, the earlier-style markers of all their identifiers (``pointer_keys``). What earlier rows of the
        chunk wrote stays remembered."""
        wanted: list[tuple[str, str]] = []
        for row in rows:
            refs = self.refs(row)
            wanted.append(self.legacy_marker_key(refs))
            for ref in refs:
                wanted += [ref.pointer_key(self.pid), self.tombstone_key(ref)]
            if row.code:
                wanted.append(keys.referral_code(self.pid, row.code))
            referrer = self.referrer_key(row)
            if referrer:
                wanted.append(referrer)
        self._refresh(wanted)
        members = list(dict.fromkeys(m for row in rows for _, m in self.owners(self.refs(row))))
        self._refresh([key for m in members
                       for key in (keys.balance(self.pid, m), self.marker_key(m), keys.member(self.pid, m))])
        legacy = []
        for member_id in members:
            profile = self.items.get(keys.member(self.pid, member_id))
            if isinstance(profile, MemberItem) and not isinstance(self.items.get(self.marker_key(member_id)),
                                                                  ImportRowItem):
                legacy += self.legacy_markers_of(profile)
        if legacy:
            self._refresh(legacy)

    def _refresh(self, wanted: list[tuple[str, str]]) -> None:
        if not wanted:
            return
        # Consistent: an erasure deletes a pointer and writes its tombstone in one transaction, so a consistent
        # read sees one of the two (an eventually consistent one could see neither and enrol her again).
        found = batch_get(wanted, consistent=True)
        for key in wanted:
            self.items.pop(key, None)
        self.items.update(found)

    def owners(self, refs: list[IdentityRef]) -> list[tuple[IdentityRef, str]]:
        """The row's identifiers that point at a member, with that member."""
        out = []
        for ref in refs:
            pointer = self.items.get(ref.pointer_key(self.pid))
            if isinstance(pointer, IdentityItem):
                out.append((ref, pointer.member_id))
        return out

    def imported(self, member_id: str | None, refs: list[IdentityRef]) -> ImportRowItem | None:
        """The marker of an import that credited this person already: the member's, or one the earlier code wrote
        (keyed by the strongest identifier of its row: this row's, or any of the member's identifiers)."""
        candidates = [self.marker_key(member_id)] if member_id is not None else []
        candidates.append(self.legacy_marker_key(refs))
        profile = self.items.get(keys.member(self.pid, member_id)) if member_id is not None else None
        if isinstance(profile, MemberItem):
            candidates += self.legacy_markers_of(profile)
        for key in candidates:
            marker = self.items.get(key)
            if isinstance(marker, ImportRowItem):
                return marker
        return None

    def referrer(self, row: ImportRow) -> _Referrer | None:
        key = self.referrer_key(row)
        pointer = self.items.get(key) if key else None
        if isinstance(pointer, CodeItem | IdentityItem):
            return _Referrer(pointer.member_id, list(pointer.ancestors or []))
        return None

    # -- writes --------------------------------------------------------------------

    def write(self, rows: list[ImportRow]) -> None:
        """Write rows in file order, several rows per transaction (``GROUP_ITEMS``) when they touch
        different items; a group that fails is written again row by row, each row on its own.

        While one group's transaction is committed (on a thread of this call's own, so a chunk never waits
        for another request's commits and no commit outlives the request: the thread is joined before
        ``write`` returns or raises), the next group is
        staged (``PIPELINED``): only from what the chunk read and the rows before it staged, as when the
        groups take turns, and it is committed only once the one before is in. When that one is
        cancelled, the next group's staging is undone (it may rest on the row taken out: its referrer, its
        member) and done again after the cancelled group is settled as :meth:`flush` settles it, so the
        rows land, or are reported, exactly as one group after the other would have them."""
        self.read(rows)
        if not PIPELINED:
            start = 0
            while start < len(rows):
                group, start = self.stage_group(rows, start)
                self.flush(group)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-commit") as committer:
            in_flight: list[Future[None]] = []
            try:
                self._pipeline(rows, committer, in_flight)
            except BaseException:
                # Staging failed while a group was committing: wait for it (the pool's exit would too) and
                # say how it ended, since the exception on its way up is not that commit's.
                for commit in in_flight:
                    wait([commit])
                    if commit.exception() is not None:
                        log.warning("import group commit ended with %s while the chunk failed",
                                    type(commit.exception()).__name__)
                raise

    def _pipeline(self, rows: list[ImportRow], committer: ThreadPoolExecutor, in_flight: list[Future[None]]) -> None:
        start = 0
        committing: tuple[list[_Staged], Future[None]] | None = None
        while True:
            mark = (self.result.skipped, len(self.result.errors))
            group, end = self.stage_group(rows, start)
            if committing is not None:
                previous, commit = committing
                committing = None
                in_flight.clear()
                try:
                    commit.result()
                except (_CodeOrPointerTaken, _Retry, _AlreadyImported, _ReferrerErased) as failed:
                    self.unstage(group, mark)
                    self.flush(previous, failed)
                    continue  # the same rows again, after the settled group
                for staged in previous:
                    self.count(staged)
            if not group:
                return
            commit = committer.submit(contextvars.copy_context().run, self.transaction(group).commit)
            committing = (group, commit)
            in_flight.append(commit)
            start = end

    def stage_group(self, rows: list[ImportRow], start: int) -> tuple[list[_Staged], int]:
        """Stage rows from ``start`` into one group (remembered as they are staged) until a row would not fit:
        too many operations, or an item another row of the group writes. Returns the group and the index of
        the first row not in it (a row that would not fit is staged again at the start of the next group:
        the rows before it may be its referrer or its member)."""
        group: list[_Staged] = []
        operations = 0
        touched: set[tuple[str, str]] = set()  # the keys the group's rows write (a set: no rescan per row)
        counters: set[tuple[str, str]] = set()  # the signup counters the group adds to (one operation each)
        index = start
        while index < len(rows):
            staged = self.try_stage(rows[index])
            if staged is None:
                index += 1
                continue
            keys_of_row = {Transaction._key(op) for op in staged.tx.ops}
            counters_of_row = {(i.pk, i.sk) for i in staged.signup}
            if group and (operations + len(staged.tx) > GROUP_ITEMS
                          or operations + len(staged.tx) + len(counters | counters_of_row) > MAX_TRANSACTION_ITEMS
                          or not touched.isdisjoint(keys_of_row)):
                break
            operations += len(staged.tx)
            touched |= keys_of_row
            counters |= counters_of_row
            group.append(staged)
            self.remember(staged)
            index += 1
        return group, index

    def unstage(self, group: list[_Staged], mark: tuple[int, int]) -> None:
        """Undo :meth:`stage_group`: forget what its rows would write, drop what staging counted (rows
        already imported, bad rows) since ``mark``."""
        for staged in group:
            self.forget(staged)
        self.result.skipped = mark[0]
        del self.result.errors[mark[1]:]

    @staticmethod
    def transaction(rows: list[_Staged]) -> Transaction:
        """The rows' operations and their new members' signup counters (merged per counter row) in one
        transaction: a member is counted exactly when it is written."""
        from chalicelib.analytics.store import counter_updates

        tx = Transaction(ops=[op for staged in rows for op in staged.tx.ops])
        for update, key in counter_updates(i for staged in rows for i in staged.signup):
            tx.update_raw(update, key)
        return tx

    def try_stage(self, row: ImportRow) -> _Staged | None:
        try:
            return self.stage_row(row)
        except _AlreadyImported:
            self.result.skipped += 1
        except _RowFailed as failed:
            self.result.errors.append(RowError(row.line, [failed.problem]))
        return None

    def flush(self, group: list[_Staged], failure: _RowConflict | None = None) -> None:
        """Commit the group; when its transaction is cancelled, the cancellation reason names the
        operation that failed, whose ``on_fail`` carries its row's line: that row is taken out (and
        written on its own, or reported), the rest of the group committed again. So an offending
        row never half-writes and never holds back its neighbours, and a group costs one more
        transaction per offending row, not one per row. ``failure``: the group's transaction was
        already tried, and cancelled so."""
        pending = list(group)
        while pending:
            try:
                if failure is not None:
                    raise failure
                self.transaction(pending).commit()
            except (_CodeOrPointerTaken, _Retry, _AlreadyImported, _ReferrerErased) as failed:
                failure = None
                offender = next((s for s in pending if s.row.line == failed.line), None)
                if offender is None:  # pragma: no cover - every condition of a staged row names its line
                    self._write_each_alone(pending)
                    return
                pending.remove(offender)
                self.forget(offender)
                self.result.group_retries += 1
                self.read([offender.row])  # imported meanwhile by another upload: with the same balance or not?
                self.write_alone(offender.row)
                continue
            for staged in pending:
                self.count(staged)
            return

    def _write_each_alone(self, group: list[_Staged]) -> None:  # pragma: no cover - see flush
        for staged in group:
            self.forget(staged)
        self.read([s.row for s in group])
        for staged in group:
            self.write_alone(staged.row)

    def write_alone(self, row: ImportRow) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                staged = self.stage_row(row)
                try:
                    self.transaction([staged]).commit()
                except _CodeOrPointerTaken:
                    self.read([row])
                    if row.code and isinstance(self.items.get(keys.referral_code(self.pid, row.code)), CodeItem):
                        raise _RowFailed("code", "this code is already taken") from None
                    raise _Retry() from None
                except _AlreadyImported:
                    self.read([row])  # imported meanwhile: with the same opening balance (skipped) or another
                    self.stage_row(row)
                    raise
                except _ReferrerErased:
                    raise referrer_being_erased(row) from None
                self.remember(staged)
                self.count(staged)
                return
            except _AlreadyImported:
                self.result.skipped += 1
                return
            except _RowFailed as failed:
                self.result.errors.append(RowError(row.line, [failed.problem]))
                return
            except _Retry:
                if attempt == _ATTEMPTS - 1:
                    self.result.errors.append(RowError(row.line, [{
                        "column": "", "message": "changed concurrently while importing; run the import again"}]))
                else:
                    self.read([row])

    def stage_row(self, row: ImportRow) -> _Staged:
        """The row's transaction (not committed). Raises ``_AlreadyImported`` or ``_RowFailed``.

        The row's identifiers must not name two members; an identifier nobody has but whose member was erased
        (a tombstone) makes the row a bad row unless the import includes erased people. A person imported before
        (the member's marker, or an earlier-style one) is already imported when the row asks for the same opening
        balance, a bad row when it asks for another. A new person becomes a member; an existing member gets the
        opening balance and the row's identifiers they did not have yet."""
        refs = self.refs(row)
        owners = self.owners(refs)
        member_id = owners[0][1] if owners else None
        other = next((ref for ref, owner in owners if owner != member_id), None)
        if other is not None:
            raise _RowFailed(other.kind, f"belongs to another member than the row's {owners[0][0].kind}")
        if member_id is not None:
            self.name(row, member_id, owners[0][0])
        # A person imported before first: a re-run of an import (also one the earlier code made) writes nothing,
        # so it reports nothing the rows it skips would have written (links, tombstones).
        marker = self.imported(member_id, refs)
        if marker is not None:
            if member_id is not None and marker.member_id != member_id:
                raise _RowFailed(refs[0].kind, "was imported before into another member")
            if int(marker.opening_balance or 0) != row.opening_balance:
                source = f" from line {int(marker.line)}" if marker.line is not None else ""
                raise _RowFailed("opening_balance", f"this person was imported already{source} with an opening "
                                                    f"balance of {int(marker.opening_balance or 0)}; an import does "
                                                    "not change it")
            raise _AlreadyImported()
        unlinked = [ref for ref in refs if all(ref is not linked for linked, _ in owners)]
        erased = [(ref, tomb) for ref in unlinked
                  if isinstance(tomb := self.items.get(self.tombstone_key(ref)), ErasedIdentityItem)]
        if erased and not self.include_erased:
            raise _RowFailed(erased[0][0].kind, "belongs to a person whose data was erased: an import does not enrol "
                                                "them again (unless the import includes erased people)")
        if member_id is not None:
            self.profile(member_id, owners[0][0].kind)  # her erasure has not started (as read)
            if unlinked:
                self.check_links(row, member_id, owners[0][0], unlinked)
        wants_referrer = bool(row.referrer_code or row.referrer_customer_id)
        referrer = self.referrer(row) if wants_referrer else None
        tx = Transaction()
        created: NewMember | None = None
        linked: list[IdentityItem] = []
        if member_id is None:
            if wants_referrer and referrer is None:
                column = "referrer_code" if row.referrer_code else "referrer_customer_id"
                raise _RowFailed(column, "no such member (import referrers before the members they referred)")
            if row.code and isinstance(self.items.get(keys.referral_code(self.pid, row.code)), CodeItem):
                raise _RowFailed("code", "this code is already taken")
            member_id = new_id("mbr")
            suppressed = [ref.value_hash for ref, tomb in erased if ref.kind == "email" and tomb.suppressed]
            if RAW_ROWS and not row.birthday and row.opening_balance >= 0:
                staged = self.stage_new_raw(row, refs, referrer, member_id)
                self.stage_suppression(staged.tx, row, member_id, suppressed)
                return staged
            member = self.new_member(row, refs, referrer, member_id)
            created = NewMember(self.pid, member.member_id, member.code, member.name, list(member.ancestors or []),
                                member.joined_at, member.referrer_id)
            stage_member_creation(tx, member, refs, _CodeOrPointerTaken(row.line))
            self.stage_suppression(tx, row, member_id, suppressed)
            if referrer is not None:
                ref_member = MemberItem(*keys.member(self.pid, referrer.member_id))
                tx.update(ref_member, [MemberItem.referral_signups.add(1)], unerased(must_exist=True),
                          on_fail=_ReferrerErased(row.line))
        elif unlinked:
            linked = self.stage_links(tx, row, member_id, unlinked)  # its profile update: erased_at not exists
        else:
            # Nothing else of the row touches her profile (DynamoDB refuses two operations on one item in a
            # transaction): her erasure starting since the read cancels the row, read again it is a bad row.
            check_unerased(tx, self.pid, member_id, _Retry(row.line), must_exist=True)
        marker_key = self.marker_key(member_id)
        entry_id = None
        if row.opening_balance:
            entry_id = stable_id("le", KIND_IMPORT, *marker_key)
            tx.create(new_entry(self.pid, member_id, entry_id, self.now, kind=KIND_IMPORT, status="available",
                                points=row.opening_balance, reason=OPENING_REASON,
                                reason_code="import_opening_balance", created_at=self.now,
                                partner_id=self.partner_id, reversed_points=0), on_fail=_AlreadyImported(row.line))
            balance = self.items.get(keys.balance(self.pid, member_id))
            stage_balance(tx, self.pid, member_id, balance if isinstance(balance, BalanceItem) else None,
                          BalanceDelta(available=row.opening_balance, earned=row.opening_balance), on_fail=_Retry(row.line))
        marker = ImportRowItem(PK=marker_key[0], SK=marker_key[1], program_id=self.pid, member_id=member_id,
                               entry_id=entry_id, opening_balance=row.opening_balance, imported_at=self.now,
                               line=row.line)
        tx.create(marker, on_fail=_AlreadyImported(row.line))
        return _Staged(row, tx, marker, created, refs, self.signup(created), linked)

    def name(self, row: ImportRow, member_id: str, found_by: IdentityRef) -> None:
        """Rows naming one member by different identifiers (an e-mail on one, a customer id on the other), which
        ``duplicates`` cannot see: the later row is a bad row naming the earlier one's line, as a repeated
        identifier is, whether or not the earlier row lands (so it never counts as imported on a group-mate's
        uncommitted marker). Recorded per line, so staging a row again (a cancelled group, a fresh read) moves it."""
        previous = self._named_by.get(row.line)
        if previous is not None and previous != member_id:
            self._lines_of[previous].discard(row.line)
        self._named_by[row.line] = member_id
        lines = self._lines_of.setdefault(member_id, set())
        lines.add(row.line)
        earlier = min((line for line in lines if line < row.line), default=None)
        if earlier is not None:
            raise _RowFailed(found_by.kind, f"duplicate of line {earlier} (the same member, named by another "
                                            "identifier): one row per person")

    def profile(self, member_id: str, column: str = "") -> MemberItem:
        """The existing member's profile as read; a member whose erasure has started is a bad row (an import
        credits nobody who asked to be forgotten, as it enrols no erased person)."""
        profile = self.items.get(keys.member(self.pid, member_id))
        if not isinstance(profile, MemberItem):
            raise _RowFailed("", "changed concurrently while importing; run the import again")
        if profile.erased_at is not None:
            raise _RowFailed(column, "belongs to a member whose data is being erased: an import does not credit "
                                     "them")
        return profile

    def check_links(self, row: ImportRow, member_id: str, found_by: IdentityRef, unlinked: list[IdentityRef]) -> None:
        """A customer id the member does not have, while they have another at this partner: a bad row."""
        profile = self.profile(member_id)
        held = (profile.customer_ids.as_dict() if profile.customer_ids else {}).get(self.partner_id or "")
        if any(ref.kind == "customer_id" for ref in unlinked) and held is not None and held != row.customer_id:
            raise _RowFailed("customer_id", f"the member the row's {found_by.kind} names has another customer id at "
                                            "this partner")

    def stage_links(self, tx: Transaction, row: ImportRow, member_id: str, unlinked: list[IdentityRef]) -> list[
            IdentityItem]:
        """An existing member named with identifiers they do not have yet gains them, as an event naming them would
        (``membership_stage.add_missing_identifiers``): a pointer each (``attribute_not_exists``) and the profile's
        ``pointer_keys`` (what an erasure deletes), customer id, e-mail or phone where it had none, conditioned on
        its revision (:meth:`check_links` has refused another customer id at the same partner)."""
        profile = self.profile(member_id)
        customer_ids = profile.customer_ids.as_dict() if profile.customer_ids else {}
        actions: list[Any] = [MemberItem.pointer_keys.set(
            list(profile.pointer_keys or []) + [key_str(r.pointer_key(self.pid)) for r in unlinked])]
        for ref in unlinked:
            if ref.kind == "customer_id" and self.partner_id and row.customer_id:
                if self.partner_id not in customer_ids:
                    actions.append(MemberItem.customer_ids.set({**customer_ids, self.partner_id: row.customer_id}))
            elif ref.kind == "email" and row.email and not profile.email:
                actions.append(MemberItem.email.set(row.email))
            elif ref.kind == "phone" and row.phone and not profile.phone:
                actions.append(MemberItem.phone.set(row.phone))
        pointers = pointer_items(profile, unlinked)
        for pointer in pointers:
            tx.create(pointer, on_fail=_CodeOrPointerTaken(row.line))
        revision = int(profile.revision or 0)
        condition = unerased(must_exist=True)  # her erasure has not started
        if profile.revision is not None:
            condition = condition & (MemberItem.revision == revision)
        tx.update(profile, [*actions, MemberItem.revision.set(revision + 1)], condition, on_fail=_Retry(row.line))
        return pointers

    def stage_suppression(self, tx: Transaction, row: ImportRow, member_id: str, suppressed: list[str]) -> None:
        """A new member whose e-mail an erased member's complaint or bounce suppressed starts suppressed, as a new
        signup does (``services.suppression_stage``)."""
        if suppressed:
            pk, sk = keys.notify_state(self.pid, member_id)
            tx.create(NotifyStateItem(PK=pk, SK=sk, program_id=self.pid, member_id=member_id, suppressed=suppressed,
                                      updated_at=self.now), on_fail=_CodeOrPointerTaken(row.line))

    def stage_new_raw(self, row: ImportRow, refs: list[IdentityRef], referrer: _Referrer | None,
                      member_id: str) -> _Staged:
        """A new member's row (no birthday) as ``store.import_items`` operations: the same items, conditions
        and ``on_fail`` as the model path of :meth:`stage_row`, without a model object per item."""
        tx = Transaction()
        ancestors = [referrer.member_id, *referrer.ancestors][: self.max_depth] if referrer is not None else []
        member = NewMember(self.pid, member_id, row.code or generate_code(), row.name or None, ancestors,
                           row.joined_at or self.now, referrer.member_id if referrer is not None else None)
        marker_key = self.marker_key(member_id)
        taken = _CodeOrPointerTaken(row.line)
        pointer_keys = [r.pointer_key(self.pid) for r in refs]
        customer_ids = {self.partner_id: row.customer_id} if row.customer_id and self.partner_id else {}
        profile = import_items.member_item(
            member, locale=row.locale or self.program.default_locale, email=row.email, phone=row.phone,
            customer_ids=customer_ids, pointer_keys=[key_str(k) for k in pointer_keys], joined_via=JOINED_VIA_IMPORT,
            acquisition={"channel": KIND_IMPORT}, attributed_at=self.now if referrer is not None else None,
            attribution_source=KIND_IMPORT if referrer is not None else None, signup_counted=True)
        items = [profile, *(import_items.pointer_item(member, k, r.kind) for k, r in zip(pointer_keys, refs, strict=True)),
                 import_items.code_item(member), import_items.link_item(member)]
        for item in items:
            tx.put_raw(import_items.create(item), import_items.key_of(item), on_fail=taken)
        if referrer is not None:
            update, key = import_items.referral_signup(self.pid, referrer.member_id)
            tx.update_raw(update, key, on_fail=_ReferrerErased(row.line))
        entry_id = None
        if row.opening_balance:
            entry_id = stable_id("le", KIND_IMPORT, *marker_key)
            entry = import_items.opening_entry(self.pid, member.member_id, entry_id, self.now, kind=KIND_IMPORT,
                                               points=row.opening_balance, reason=OPENING_REASON,
                                               reason_code="import_opening_balance", partner_id=self.partner_id)
            tx.put_raw(import_items.create(entry), import_items.key_of(entry), on_fail=_AlreadyImported(row.line))
            update, key = import_items.new_balance(self.pid, member.member_id, row.opening_balance)
            tx.update_raw(update, key, on_fail=_Retry(row.line))
        marker = import_items.import_marker(marker_key, self.pid, member.member_id, entry_id, row.opening_balance,
                                            self.now, row.line)
        tx.put_raw(import_items.create(marker), marker_key, on_fail=_AlreadyImported(row.line))
        remembered = ImportRowItem(PK=marker_key[0], SK=marker_key[1], program_id=self.pid,
                                   member_id=member.member_id, opening_balance=row.opening_balance, line=row.line)
        return _Staged(row, tx, remembered, member, refs, self.signup(member))

    def signup(self, member: NewMember | None) -> list[Increment]:
        """A new member's signup counters (the analytics consumer skips members with ``signup_counted``)."""
        from chalicelib.analytics.consumer import signup_rows

        if member is None:
            return []
        return signup_rows(self.pid, member.joined_at, bool(member.referrer_id), {"channel": KIND_IMPORT})

    def count(self, staged: _Staged) -> None:
        if staged.created is not None:
            self.result.imported += 1
        else:
            self.result.existing += 1
        self.result.points += staged.row.opening_balance

    def new_member(self, row: ImportRow, refs: list[IdentityRef], referrer: _Referrer | None,
                   member_id: str) -> MemberItem:
        customer_ids = {self.partner_id: row.customer_id} if row.customer_id and self.partner_id else {}
        member = new_member(
            self.pid, member_id, row.code or generate_code(), joined_at=row.joined_at or self.now,
            joined_via=JOINED_VIA_IMPORT, name=row.name or None, locale=row.locale or self.program.default_locale,
            email=row.email, phone=row.phone, birthday=row.birthday, customer_ids=customer_ids,
            acquisition={"channel": KIND_IMPORT}, refs=refs,
        )
        member.signup_counted = True  # by the row's own transaction (``transaction``)
        if referrer is not None:
            member.referrer_id = referrer.member_id
            member.ancestors = [referrer.member_id, *referrer.ancestors][: self.max_depth]
            member.attributed_at = self.now
            member.attribution_source = KIND_IMPORT
            member.attribution_final = True
        return member

    def remember(self, staged: _Staged) -> None:
        """What the row writes, so later rows of the chunk find it (as their referrer, member or duplicate)."""
        self.items[(staged.marker.PK, staged.marker.SK)] = staged.marker
        for pointer in staged.linked:
            self.items[(pointer.PK, pointer.SK)] = pointer
        member = staged.created
        if member is None:
            return
        ancestors = list(member.ancestors)
        for ref in staged.refs:
            pk, sk = ref.pointer_key(self.pid)
            self.items[(pk, sk)] = IdentityItem(PK=pk, SK=sk, program_id=self.pid, member_id=member.member_id,
                                                kind=ref.kind, ancestors=ancestors)
        pk, sk = keys.referral_code(self.pid, member.code)
        self.items[(pk, sk)] = CodeItem(PK=pk, SK=sk, program_id=self.pid, member_id=member.member_id,
                                        code=member.code, ancestors=ancestors)

    def forget(self, staged: _Staged) -> None:
        self.items.pop((staged.marker.PK, staged.marker.SK), None)
        for pointer in staged.linked:
            self.items.pop((pointer.PK, pointer.SK), None)
        if staged.created is not None:
            for ref in staged.refs:
                self.items.pop(ref.pointer_key(self.pid), None)
            self.items.pop(keys.referral_code(self.pid, staged.created.code), None)


class _CodeOrPointerTaken(_RowConflict):
    pass


class _RowFailed(Exception):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.problem = {"column": column, "message": message}
