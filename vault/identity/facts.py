"""Identity facts for the policy (docs/spec.md §5, §6): read by :meth:`VaultContext.gather_facts` in one
read snapshot for every decision, and by the access views.

On the ``secret get`` path: imports nothing heavy and nothing above the store layer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from vault import policy
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.principal import Principal
from vault.store import rowmac
from vault.store.clients import ClientRow
from vault.tuples import NamedTuple

TOUCH_SECONDS = 60  # last_seen is rewritten at most once a minute (idle timeout precision)

#: every read of a user row checks its MAC (vault.store.rowmac: id, name, disabled, lock, training,
#: enrolled)
USER_COLUMNS = (
    "id, name, password_hash, totp_sealed, totp_active, totp_last_step, failed_count,"
    " locked_until, training_valid_until, disabled, created_at, enrolled_at, mac"
)


class UserRow(NamedTuple):
    id: int
    name: str
    password_hash: str | None
    totp_sealed: bytes | None
    totp_active: bool
    totp_last_step: int | None
    failed_count: int
    locked_until: int | None
    training_valid_until: int | None
    disabled: bool
    created_at: int
    enrolled_at: int | None


def user_from_row(conn, row) -> UserRow:
    """A row of ``SELECT USER_COLUMNS``, its MAC checked (RowTampered if it fails)."""
    rowmac.check(conn, "users", (row[0], row[1], row[9], row[7], row[8], row[2] is None), row[12])
    return UserRow(
        row[0],
        row[1],
        row[2],
        row[3],
        bool(row[4]),
        row[5],
        row[6],
        row[7],
        row[8],
        bool(row[9]),
        row[10],
        row[11],
    )


def minutes(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{max(1, -(-seconds // 60))} min"


def user_row(conn, name: str) -> UserRow | None:
    row = conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()  # noqa: S608 - a constant column list; values are bound
    return user_from_row(conn, row) if row else None


def user_by_id(conn, user_id: int) -> UserRow | None:
    row = conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()  # noqa: S608 - a constant column list; values are bound
    return user_from_row(conn, row) if row else None


def user_roles(conn, user_id: int) -> frozenset[str]:
    """The user's roles, each row's MAC checked."""
    return frozenset(r[2] for r in rowmac.select(conn, "user_roles", "user_id = ?", (user_id,)))


class AccountSnapshot(NamedTuple):
    """The account rows ``users.resume`` read for one request, each MAC-checked (the user row, the
    session row, the roles), lent to that request's first authorization decision so it does not
    read them again (docs/service.md, "One read"). Only inside ``VaultContext.one_request()``,
    never across requests, and only while nothing was written on the connection since
    (``writes``: ``Database.writes`` when taken)."""

    session_id: str
    user: UserRow
    session: tuple
    roles: frozenset[str]
    writes: int


def session_state(
    conn,
    settings: dict,
    session_id: str | None,
    user_id: int,
    now: datetime,
    rows: list | None = None,
) -> tuple[bool, str, datetime | None, bool]:
    """(valid, reason if not, step-up time, last_seen needs a refresh). The row's MAC is checked
    (RowTampered: a row forged, edited or moved to another user), and its times are bounded by
    now: a session that claims to start, be used or be stepped up later than now is refused.
    ``rows``: the session's rows as ``rowmac.select`` gave them in this snapshot already."""
    if not session_id:
        return False, "no session: log in first", None, False
    if rows is None:
        rows = rowmac.select(conn, "sessions", "token_hash = ?", (session_id,))
    if not rows or rows[0][2] != user_id:
        return False, "no such session: log in again", None, False
    _, _, _, created, last_seen, stepup, ended, _ = rows[0]
    t = to_epoch(now)
    if ended is not None:
        return False, "session ended: log in again", None, False
    if created > t or (stepup is not None and stepup > t):
        return False, "session times are later than now (clock moved back?): log in again", None, False
    last_seen = min(last_seen, t)  # used "later than now" (the clock moved back) counts as now
    absolute, idle = int(settings["session_absolute_seconds"]), int(settings["session_idle_seconds"])
    if t >= created + absolute:
        return False, f"session expired ({minutes(absolute)} limit): log in again", None, False
    if t - last_seen >= idle:
        return False, f"session idle for {minutes(idle)}: log in again", None, False
    return True, "", (from_epoch(stepup) if stepup is not None else None), t - last_seen >= TOUCH_SECONDS


def account_facts(
    conn, settings: dict, principal: Principal, now: datetime, snapshot: AccountSnapshot | None = None
) -> tuple[policy.AccountFacts, int | None, bool]:
    """The account's facts for one decision. ``snapshot``: this request's rows from
    ``users.resume`` (the caller checked it is for this principal's session and still current);
    the rest (requests, the single-operator mark) is read here."""
    if snapshot is not None:
        lent = snapshot.user
        valid, reason, stepup_at, touch = session_state(
            conn, settings, principal.session_id, lent.id, now, rows=[snapshot.session]
        )
        account = _account(
            conn, lent, session_valid=valid, session_reason=reason, stepup_at=stepup_at, roles=snapshot.roles
        )
        return account, lent.id, touch
    user = user_row(conn, principal.name)
    if user is None:
        return (
            policy.AccountFacts(
                disabled=True,
                session_valid=False,
                roles=frozenset(),
                session_reason=f"{principal.name} is not a known user",
            ),
            None,
            False,
        )
    valid, reason, stepup_at, touch = session_state(conn, settings, principal.session_id, user.id, now)
    return (
        _account(conn, user, session_valid=valid, session_reason=reason, stepup_at=stepup_at),
        user.id,
        touch,
    )


def assignment_state(
    conn, client_id: str, user_id: int | None, now: datetime
) -> tuple[bool, datetime | None, bool, dict | None]:
    """(assigned, ends_at, ended, view). An unassigned or lapsed assignment stays visible as
    "ended" so that a refusal says so (and the audit report can count reads after the end)."""
    if user_id is None:
        return False, None, False, None
    rows = [
        (r[4], r[5], r[6], r[7])
        for r in rowmac.select(
            conn, "assignments", "client_id = ? AND user_id = ?", (client_id, user_id), order="id DESC"
        )
    ]
    if not rows:
        return False, None, False, None
    open_rows = [r for r in rows if r[3] is None]
    row = open_rows[0] if open_rows else rows[0]
    created, by, ends_at, ended_at = row
    ends = from_epoch(ends_at) if ends_at is not None else None
    ended = ended_at is not None or (ends is not None and now >= ends)
    view = {
        "since": rfc3339(from_epoch(created)),
        "by": by,
        "until": rfc3339(ends) if ends else None,
        "ended_at": rfc3339(from_epoch(ended_at)) if ended_at is not None else None,
        "ended": ended,
    }
    return True, ends, ended, view


def client_facts(conn, client: ClientRow, user_id: int | None, now: datetime) -> policy.ClientFacts:
    assigned, ends, ended, _ = assignment_state(conn, client.id, user_id, now)
    return policy.ClientFacts(
        name=client.name,
        state=client.state(now),
        assigned=assigned,
        assignment_ends_at=ends,
        assignment_ended=ended,
        teams=tuple(p for p, _ in team_paths(conn, client.id, user_id, now)),
    )


# --- teams (0011_moving_in.sql; docs/identity.md "Teams") ---------------------------------------------
# The team tables are policy facts: every row these functions use has its MAC checked
# (vault.store.rowmac: teams, team_members, team_assignments); a planted or edited row is an
# integrity failure, never a path to a client.


def _team(conn, team_id: int) -> tuple | None:
    """``(rowid, id, name, removed_at)`` of the team, its MAC checked."""
    rows = rowmac.select(conn, "teams", "id = ?", (team_id,))
    return rows[0] if rows else None


def team_paths(
    conn, client_id: str, user_id: int | None, now: datetime
) -> list[tuple[policy.TeamPath, dict]]:
    """Every team the user is or was a member of that is or was assigned to the client, with a
    view for the access views: (path, {team, member, member_since, left_at, since, by, until,
    ended_at, ended}). Open rows win over ended ones (the latest of each)."""
    if user_id is None:
        return []
    memberships: dict[int, list[tuple]] = {}
    for row in rowmac.select(conn, "team_members", "user_id = ?", (user_id,), order="id"):
        memberships.setdefault(row[2], []).append(row)
    t = to_epoch(now)
    found = []
    for team_id, rows in memberships.items():
        assignments = rowmac.select(
            conn, "team_assignments", "client_id = ? AND team_id = ?", (client_id, team_id), order="id"
        )
        if not assignments:
            continue
        team = _team(conn, team_id)
        if team is None:
            continue
        found.append((team[2], team_id, team[3], rows, assignments))
    out: list[tuple[policy.TeamPath, dict]] = []
    for name, _, removed_at, rows, assignments in sorted(found, key=lambda f: (f[0], f[1])):
        open_rows = [r for r in rows if r[5] is None]
        member_row = open_rows[-1] if open_rows else rows[-1]
        open_assignments = [a for a in assignments if a[7] is None]
        _, _, _, _, created, by, ends_at, ended_at = (open_assignments or assignments)[-1]
        member = bool(open_rows) and removed_at is None
        ended = ended_at is not None or (ends_at is not None and t >= ends_at)
        path = policy.TeamPath(
            team=name,
            member=member,
            assignment_ends_at=from_epoch(ends_at) if ends_at is not None else None,
            assignment_ended=ended,
        )
        left = member_row[5] if member_row[5] is not None else removed_at
        view = {
            "team": name,
            "member": member,
            "member_since": rfc3339(from_epoch(member_row[4])),
            "left_at": rfc3339(from_epoch(left)) if left is not None and not member else None,
            "since": rfc3339(from_epoch(created)),
            "by": by,
            "until": rfc3339(from_epoch(ends_at)) if ends_at is not None else None,
            "ended_at": rfc3339(from_epoch(ended_at)) if ended_at is not None else None,
            "ended": ended,
        }
        out.append((path, view))
    return out


def open_paths(conn, client_ids: list[str], now: datetime) -> dict[str, dict[str, policy.ClientFacts]]:
    """For each of ``client_ids``: every user with an open direct assignment or an open team path
    to it, by name, with the need-to-know facts of those paths (for
    :func:`vault.policy.assignment_path`, which says whether and through which team they reach
    it). Batched (a handful of queries for a page of clients, whatever its size), every row's MAC
    checked as for a decision: the console's clients table."""
    out: dict[str, dict[str, policy.ClientFacts]] = {cid: {} for cid in client_ids}
    if not client_ids:
        return out
    t = to_epoch(now)
    marks = ", ".join("?" * len(client_ids))
    direct: dict[tuple[str, int], int | None] = {}
    for _, _, client_id, user_id, _, _, ends_at, _ in rowmac.select(
        conn, "assignments", f"client_id IN ({marks}) AND ended_at IS NULL", tuple(client_ids)
    ):
        direct[(client_id, user_id)] = ends_at
    team_rows = rowmac.select(
        conn,
        "team_assignments",
        f"client_id IN ({marks}) AND ended_at IS NULL",
        tuple(client_ids),
        order="id",
    )
    team_ids = sorted({a[3] for a in team_rows})
    teams: dict[int, str] = {}
    members: dict[int, set[int]] = {}
    if team_ids:
        tmarks = ", ".join("?" * len(team_ids))
        teams = {
            row[1]: row[2]
            for row in rowmac.select(
                conn, "teams", f"id IN ({tmarks}) AND removed_at IS NULL", tuple(team_ids)
            )
        }
        for row in rowmac.select(
            conn, "team_members", f"team_id IN ({tmarks}) AND removed_at IS NULL", tuple(team_ids)
        ):
            members.setdefault(row[2], set()).add(row[3])
    paths: dict[tuple[str, int], list[policy.TeamPath]] = {}
    for _, _, client_id, team_id, _, _, ends_at, _ in team_rows:
        if team_id not in teams:
            continue
        for user_id in members.get(team_id, ()):
            paths.setdefault((client_id, user_id), []).append(
                policy.TeamPath(
                    team=teams[team_id],
                    member=True,
                    assignment_ends_at=from_epoch(ends_at) if ends_at is not None else None,
                    assignment_ended=ends_at is not None and t >= ends_at,
                )
            )
    user_ids = sorted({u for _, u in direct} | {u for _, u in paths})
    if not user_ids:
        return out
    umarks = ", ".join("?" * len(user_ids))
    names = {row[1]: row[2] for row in rowmac.select(conn, "users", f"id IN ({umarks})", tuple(user_ids))}
    for client_id, user_id in sorted(set(direct) | set(paths)):
        if user_id not in names:
            continue
        ends = direct.get((client_id, user_id))
        out[client_id][names[user_id]] = policy.ClientFacts(
            name="",
            state="",
            assigned=(client_id, user_id) in direct,
            assignment_ends_at=from_epoch(ends) if ends is not None else None,
            assignment_ended=ends is not None and t >= ends,
            teams=tuple(sorted(paths.get((client_id, user_id), ()), key=lambda p: p.team)),
        )
    return out


def team_client_ids(conn, user_id: int, now: datetime) -> set[str]:
    """The clients the user reaches through a team right now (open membership, live team, open
    team assignment not past its end)."""
    t = to_epoch(now)
    out: set[str] = set()
    for row in rowmac.select(conn, "team_members", "user_id = ? AND removed_at IS NULL", (user_id,)):
        team = _team(conn, row[2])
        if team is None or team[3] is not None:
            continue
        for a in rowmac.select(conn, "team_assignments", "team_id = ? AND ended_at IS NULL", (row[2],)):
            if a[6] is None or t < a[6]:
                out.add(a[2])
    return out


def team_reaches(conn, team_id: int) -> tuple[policy.Reach, ...]:
    """The team's current members with their lineages: the people assigning the team gives
    need-to-know (policy.TEAM_BOUND)."""
    users = []
    for row in rowmac.select(conn, "team_members", "team_id = ? AND removed_at IS NULL", (team_id,)):
        user = user_by_id(conn, row[3])
        if user is not None:
            users.append(user)
    return tuple(reach(conn, u) for u in sorted(users, key=lambda u: u.name))


def reach(conn, user: UserRow) -> policy.Reach:
    """One person a team action gives need-to-know, with the lineage and the code holders the
    team rule compares with the actor (:data:`vault.policy.TEAM_BOUND`)."""
    return policy.Reach(user.name, lineage(conn, user.id), code_holders(conn, user.id))


def touch_session(db, session_id: str, now: datetime) -> None:
    with db.write() as conn:
        rowmac.update(
            conn,
            "sessions",
            "last_seen = max(last_seen, ?)",
            (to_epoch(now),),
            "token_hash = ? AND ended_at IS NULL",
            (session_id,),
        )


def end_sessions(conn, user_id: int, at: int, *, keep: str = "") -> int:
    """End every live session of the user (but ``keep``); returns how many."""
    return rowmac.update(
        conn,
        "sessions",
        "ended_at = ?",
        (at,),
        "user_id = ? AND ended_at IS NULL AND token_hash != ?",
        (user_id, keep),
    )


def visible_client_ids(ctx, principal: Principal) -> set[str] | None:
    """None: the principal sees every client; otherwise the ids of its current assignments."""
    if principal.kind != "user":
        return None
    now = ctx.now()
    with ctx.db.read() as conn:
        user = user_row(conn, principal.name)
        if user is None:
            return set()
        if suspended(conn, user.id):
            return set()
        if policy.sees_all_clients(user_roles(conn, user.id)):
            return None
        rows = [
            (r[2], r[6])
            for r in rowmac.select(conn, "assignments", "user_id = ? AND ended_at IS NULL", (user.id,))
        ]
        through_teams = team_client_ids(conn, user.id, now)
    t = to_epoch(now)
    return {cid for cid, ends in rows if ends is None or t < ends} | through_teams


def _account(
    conn,
    user: UserRow,
    *,
    session_valid: bool,
    session_reason: str = "",
    stepup_at: datetime | None,
    roles: frozenset[str] | None = None,
) -> policy.AccountFacts:
    """The account's own facts (disabled, lock, training, roles) with the session's. ``roles``:
    read in this request already (an :class:`AccountSnapshot`)."""
    return policy.AccountFacts(
        disabled=user.disabled,
        locked_until=from_epoch(user.locked_until) if user.locked_until is not None else None,
        training_valid_until=(
            from_epoch(user.training_valid_until) if user.training_valid_until is not None else None
        ),
        session_valid=session_valid,
        session_reason=session_reason,
        stepup_at=stepup_at,
        roles=user_roles(conn, user.id) if roles is None else roles,
        suspended=suspended(conn, user.id),
        single_operator=single_operator(conn),
    )


def assumed_reader_facts(conn, user: UserRow, now: datetime) -> policy.AccountFacts:
    """The account facts of ``user`` as they stand now, assuming a live session with a fresh
    step-up (the two facts that belong to a login, not to the account): the access views."""
    return _account(conn, user, session_valid=True, stepup_at=now)


def users_for_client(conn, client_id: str) -> list[UserRow]:
    """Every engineer and everyone ever assigned to the client, directly or through a team, by name."""
    rows = conn.execute(
        f"SELECT {USER_COLUMNS} FROM users WHERE id IN"  # noqa: S608 - a constant column list; values are bound
        " (SELECT user_id FROM user_roles WHERE role = 'engineer'"
        "  UNION SELECT user_id FROM assignments WHERE client_id = ?"
        "  UNION SELECT m.user_id FROM team_members m JOIN team_assignments a ON a.team_id = m.team_id"
        "  WHERE a.client_id = ?) ORDER BY name",
        (client_id, client_id),
    ).fetchall()
    return [user_from_row(conn, r) for r in rows]


def all_users(conn) -> list[UserRow]:
    return [user_from_row(conn, r) for r in conn.execute(f"SELECT {USER_COLUMNS} FROM users ORDER BY name")]  # noqa: S608 - a constant column list; no input in the SQL


# --- separation of duties (0006_separation.sql; docs/identity.md "Separation of duties") -------------

REQUEST_COLUMNS = (
    "id, kind, requested_by, requested_at, approved_by, approved_at, mode, confirmed_by, confirmed_at"
)


class AccountRequest(NamedTuple):
    id: int
    kind: str  # create | reset | reset_totp
    requested_by: str
    requested_at: int
    approved_by: str | None
    approved_at: int | None
    mode: str  # two_person | bootstrap | single_operator | init
    confirmed_by: str | None
    confirmed_at: int | None

    @property
    def pending(self) -> bool:
        return self.approved_at is None

    def people(self) -> frozenset[str]:
        """The named people of this step (system actors, such as ``system:init``, are no one)."""
        return frozenset(n for n in (self.requested_by, self.approved_by) if n and ":" not in n)


def single_operator(conn) -> bool:
    """Whether the vault was made with ``init --single-operator`` (two-person rules off); the
    row's MAC is checked (a row inserted by a file writer would turn the two-person rules off)."""
    value = rowmac.meta_value(conn, "single_operator")
    return value is not None and str(value) == "1"


def latest_request(conn, user_id: int, kinds: tuple[str, ...]) -> AccountRequest | None:
    marks = ", ".join("?" for _ in kinds)
    row = conn.execute(
        f"SELECT {REQUEST_COLUMNS}, user_id, mac FROM account_requests WHERE user_id = ?"  # noqa: S608 - constant columns and placeholders; values are bound
        f" AND kind IN ({marks}) ORDER BY id DESC LIMIT 1",
        (user_id, *kinds),
    ).fetchone()
    if row is None:
        return None
    request = AccountRequest(*row[:9])
    rowmac.check(conn, "account_requests", (request.id, row[9], *request[1:]), row[10])
    return request


def creation(conn, user_id: int) -> AccountRequest | None:
    return latest_request(conn, user_id, ("create",))


def latest_reset(conn, user_id: int) -> AccountRequest | None:
    return latest_request(conn, user_id, ("reset", "reset_totp"))


def pending_request(conn, user_id: int) -> AccountRequest | None:
    """The account's request waiting for a second admin (a creation or a full reset), if any."""
    row = latest_request(conn, user_id, ("create", "reset"))
    return row if row is not None and row.pending else None


def lineage(conn, user_id: int | None) -> frozenset[str]:
    """Who requested or approved the account's creation and its latest factor reset: the people
    who held (or could have held) its enrollment code, and so may not vouch for it (rule 2)."""
    if user_id is None:
        return frozenset()
    people: set[str] = set()
    for row in (creation(conn, user_id), latest_reset(conn, user_id)):
        if row is not None:
            people |= row.people()
    return frozenset(people)


def first_bootstrap(conn) -> int | None:
    """The id of the vault's one bootstrap step that counts (review2 S1): its first bootstrap
    creation whose account enrolled (the original second admin, made by the first alone). Every
    row read is MAC-checked, so a file writer cannot move the exemption to another row."""
    for row in rowmac.select(conn, "account_requests", "kind = 'create' AND mode = 'bootstrap'", order="id"):
        user = user_by_id(conn, row[2])  # (rowid, id, user_id, ...)
        if user is not None and (user.password_hash is not None or _reset_since(conn, user.id, row[1])):
            return int(row[1])
    return None


def _reset_since(conn, user_id: int, request_id: int) -> bool:
    """Whether a reset was requested for the account after its creation: it had enrolled (a full
    reset clears the password until the person enrolls again)."""
    return bool(rowmac.select(conn, "account_requests", "user_id = ? AND id > ?", (user_id, request_id)))


#: MACed meta key written the first time the vault is seen with two enrolled admins (review2 S1)
TWO_ADMINS = "two_admins"


def note_admins(conn) -> None:
    """Inside a write transaction: record, once, that the vault has two enrolled admins (called
    wherever the admins can change: enrollment, ``user add``, and every admin change, before and
    after it). The bootstrap window never re-opens after that (:func:`bootstrap_open`)."""
    if rowmac.meta_value(conn, TWO_ADMINS) is None and enrolled_admins(conn) >= 2:
        rowmac.put_meta(conn, TWO_ADMINS, "1")


def bootstrap_closed_in_log(conn) -> bool:
    """Whether the hash-chained audit log holds the entry that the vault had two enrolled admins
    (``integrity.bootstrap_closed``, appended when the mark's fact rose; review6 R6-1): a file
    writer who puts back an older mark and strips the entries' tags still leaves it, and removing
    it means rebuilding the chain after it. Read only while everything else says "open" (a new
    vault's short log). A planted entry only closes the window early; so does one whose outcome
    is not ``ok`` (cvault appends it only as ``ok``: another outcome is an edit, review7 R7-3, and
    the window stays closed). Editing its action is seen by the chain proof (``chain_proven``)."""
    return (
        conn.execute(
            "SELECT 1 FROM audit_events WHERE action = ? LIMIT 1",
            (policy.AuditEvent.INTEGRITY_BOOTSTRAP_CLOSED.value,),
        ).fetchone()
        is not None
    )


def bootstrap_open(
    conn, *, closed_by_mark: bool = False, chain_proven: Callable[[], bool] | None = None
) -> bool:
    """Whether ``user add --role admin`` may still be a bootstrap step (review2 S1): only while
    the vault has never had two enrolled admins. Decided from authenticated state, never from the
    current count of enabled admins alone (one admin lowers it by disabling or revoking the
    other): the MACed meta row :data:`TWO_ADMINS`, and, should a file writer delete that row, the
    MACed creation rows: a bootstrap-made admin that enrolled, or two enrolled accounts that
    hold the admin role and were made outside the two-person flow (init rows: the first admin, and
    every account of a vault older than the separation of duties). ``closed_by_mark``: the sealed
    audit high-water mark's one-way fact that the ``two_admins`` row existed (review4 R4-6: a
    file writer can delete both rows; he cannot lower the mark without the integrity alarm).
    ``chain_proven``: asked last, only when all of that says "open" (review7 R7-3): the audit
    chain re-hashed against the mark (vault.audit.log.AuditLog.chain_proven); False keeps the
    window closed, a break raises the integrity alarm."""
    if closed_by_mark:
        return False
    if rowmac.meta_value(conn, TWO_ADMINS) is not None or first_bootstrap(conn) is not None:
        return False
    if bootstrap_closed_in_log(conn):
        return False
    admins = {r[1] for r in rowmac.select(conn, "user_roles", "role = 'admin'")}
    made_alone = 0
    for user_id in admins:
        made = creation(conn, user_id)
        user = user_by_id(conn, user_id)
        if made is not None and made.mode == "init" and user is not None and user.password_hash is not None:
            made_alone += 1
    if made_alone >= 2:
        return False
    return chain_proven is None or chain_proven()


def lineage_closure(conn, name: str | None, *, exempt: int | None = None) -> frozenset[str]:
    """The transitive lineage of the account ``name`` (review R9): its :func:`lineage`, the
    lineages of those people's accounts, and so on (every row read MAC-checked). Someone in it
    may hold, or have handed out, an account that vouches for ``name``: alice's second account
    alice2 (approved once, in good faith) has alice in its closure, so alice2 is no second
    person to alice, nor an account alice2 created to her. ``exempt``: the id of one request
    row left out (the vault's first bootstrap step, :func:`first_bootstrap`)."""
    seen: set[str] = set()
    frontier = [name] if name else []
    while frontier:
        user = user_row(conn, frontier.pop())
        if user is None:
            continue
        steps = (creation(conn, user.id), latest_reset(conn, user.id))
        counted = [row for row in steps if row is not None and (exempt is None or row.id != exempt)]
        people = {p for row in counted for p in row.people()}
        for person in people:
            if person not in seen:
                seen.add(person)
                frontier.append(person)
    seen.discard(name or "")
    return frozenset(seen)


def code_holders(conn, user_id: int | None) -> frozenset[str]:
    """Who was handed the account's enrollment code at its creation and latest full reset: the
    approver (a bootstrap or single-operator step: its requester). Review2 S3."""
    if user_id is None:
        return frozenset()
    out: set[str] = set()
    for row in (creation(conn, user_id), full_reset(conn, user_id)):
        if row is None or row.mode == "init":  # made outside the two-person flow: no code handed
            continue
        holder = row.requested_by if row.mode in ("bootstrap", "single_operator") else row.approved_by
        if holder and ":" not in holder:
            out.add(holder)
    return frozenset(out)


def requester_chain(conn, name: str) -> frozenset[str]:
    """Who asked for the account ``name``, who asked for theirs, and so on (every row
    MAC-checked; the vault's first bootstrap step left out, as in :func:`actor_closure`). The
    person an account was asked for by may be its holder (review R9: alice asks for her own
    second account alice2), so the rule-2 and team actions compare this chain with the subject's
    code holders (review2 S3)."""
    exempt = first_bootstrap(conn)
    seen: set[str] = set()
    frontier = [name]
    while frontier:
        user = user_row(conn, frontier.pop())
        if user is None:
            continue
        for row in (creation(conn, user.id), latest_reset(conn, user.id)):
            if row is None or row.id == exempt or row.mode == "init":
                continue
            person = row.requested_by
            if person and ":" not in person and person not in seen:
                seen.add(person)
                frontier.append(person)
    seen.discard(name)
    return frozenset(seen)


def actor_closure(conn, actor: str) -> frozenset[str]:
    """The vouching actor's transitive lineage, the one rule of every vouching action (review R9,
    review2 S3): the second-person actions, rule 2 (:data:`vault.policy.LINEAGE_BOUND`) and the
    team rule (:data:`vault.policy.TEAM_BOUND`). The vault's first bootstrap step alone is left
    out: the second admin of a new vault is made by the first alone (reported by doctor and every
    audit report), and that one step does not bar it from approving the first's requests, or a
    two-admin shop could approve nothing. Any later admin made by one person counts (review2 S1)."""
    return lineage_closure(conn, actor, exempt=first_bootstrap(conn))


def second_person(conn, actor: str, requester: str, *, alone: bool | None = None) -> str | None:
    """:func:`vault.policy.distinct_people` on the two people's transitive lineages: why ``actor``
    is no second person to ``requester`` (or None). The one rule of every second-person action
    (:data:`vault.policy.SECOND_PERSON`, and the re-confirmation after a reset)."""
    return policy.distinct_people(
        actor,
        requester,
        lineage_closure(conn, requester),
        single_operator=single_operator(conn) if alone is None else alone,
        actor_lineage=actor_closure(conn, actor),
    )


def full_reset(conn, user_id: int) -> AccountRequest | None:
    """The account's latest *full* reset (a ``reset-totp`` after it suspends nothing and is not
    the row a re-confirmation checks or stamps, review2 S8)."""
    return latest_request(conn, user_id, ("reset",))


def suspended(conn, user_id: int) -> bool:
    """A full reset was approved and nobody outside its lineage has re-confirmed the account's
    roles and assignments yet: they do not count (SPEC issue 11, item 3)."""
    row = full_reset(conn, user_id)
    return row is not None and row.approved_at is not None and row.confirmed_at is None


def enrolled_admins(conn) -> int:
    """Enabled, enrolled admins (fewer than two: bootstrap mode), every row it counts authentic."""
    admins = {r[1] for r in rowmac.select(conn, "user_roles", "role = 'admin'")}
    count = 0
    for user_id in admins:
        user = user_by_id(conn, user_id)
        if user is not None:
            count += not user.disabled and user.password_hash is not None
    return count


def separation_facts(conn) -> dict:
    """What weakens the two-person rules, for ``doctor`` and every ``audit report`` (issue 11):
    whether the vault is single-operator, and every bootstrap step ever taken (an admin account
    activated by one admin alone while the vault had fewer than two enrolled admins)."""
    rows = conn.execute(
        "SELECT u.name, r.requested_by, r.requested_at FROM account_requests r"
        " JOIN users u ON u.id = r.user_id WHERE r.mode = 'bootstrap' ORDER BY r.id"
    ).fetchall()
    return {
        "single_operator": single_operator(conn),
        "bootstrap_steps": [
            {"user": name, "activated_by": by, "at": rfc3339(from_epoch(at))} for name, by, at in rows
        ],
    }
