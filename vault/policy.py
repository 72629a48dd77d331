"""Authorization: the one module that decides (docs/spec.md §6). Deny by default; roles are additive.

:data:`PERMISSIONS` is the whole role table. :func:`decide` is a pure function of the principal,
the action and the facts gathered for it (assignment, training, SLA state, account state, session);
it returns a :class:`Decision` with a human reason. It never touches the database: the context that
calls it gathers the facts and writes every decision, allow and deny, to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vault.principal import SYSTEM_ROLE, Principal
from vault.tuples import NamedTuple


class _ConstantsType(type):
    """Metaclass of :class:`_StrConstants`: iteration in definition order, ``len``, lookup by value
    (``Action("secret.get")``) and by name (``Action["SECRET_GET"]``)."""

    _members_: dict[str, Any]
    _by_value_: dict[str, Any]

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> _ConstantsType:
        cls = super().__new__(mcs, name, bases, namespace)
        members: dict[str, Any] = {}
        for key, value in namespace.items():
            if not key.startswith("_") and type(value) is str:
                member: Any = str.__new__(cls, value)  # type: ignore[arg-type]
                member._name_ = key
                members[key] = member
                type.__setattr__(cls, key, member)
        cls._members_ = members
        cls._by_value_ = {str.__str__(m): m for m in members.values()}
        return cls

    def __iter__(cls) -> Iterator[Any]:
        return iter(cls._members_.values())

    def __len__(cls) -> int:
        return len(cls._members_)

    def __contains__(cls, value: object) -> bool:
        return isinstance(value, str) and value in cls._by_value_

    def __call__(cls, value: object) -> Any:
        if isinstance(value, str) and value in cls._by_value_:
            return cls._by_value_[value]
        raise ValueError(f"{value!r} is not a valid {cls.__name__}")

    def __getitem__(cls, name: str) -> Any:
        return cls._members_[name]


class _LightStrEnum(str, metaclass=_ConstantsType):
    """What cvault uses of :class:`enum.StrEnum`, for :class:`Action` and :class:`AuditEvent`:
    members are instances, ``str`` equal to their value (hashing, JSON, SQLite, f-strings as the
    value), with ``.value`` and ``.name``; iteration, ``len``, ``Action(value)``, ``Action[name]``,
    pickling to the same member. Python 3.11's enum machinery takes about 10 M instructions (~3 ms)
    to build these ~90 members, 7 % of a whole ``cvault secret get`` (docs/performance.md); this
    takes a tenth of that. Type checkers see StrEnum itself (``_StrConstants``);
    ``tests/core/test_fast_paths.py`` checks the behaviour matches StrEnum's."""

    _name_: str

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def name(self) -> str:
        return self._name_

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._name_}: {str.__repr__(self)}>"

    def __reduce_ex__(self, protocol: object) -> tuple[Any, tuple[str]]:
        return type(self), (str.__str__(self),)

    def __copy__(self) -> _LightStrEnum:
        return self

    def __deepcopy__(self, memo: object) -> _LightStrEnum:
        return self


if TYPE_CHECKING:
    from enum import StrEnum as _StrConstants
else:
    _StrConstants = _LightStrEnum


class Action(_StrConstants):
    # staff administration (admin)
    USER_ADD = "user.add"
    USER_LIST = "user.list"
    USER_SHOW = "user.show"
    USER_DISABLE = "user.disable"
    USER_ENABLE = "user.enable"
    USER_GRANT = "user.grant"
    USER_REVOKE = "user.revoke"
    USER_UNLOCK = "user.unlock"
    USER_RESET_TOTP = "user.reset_totp"
    USER_TRAIN = "user.train"
    USER_APPROVE = "user.approve"
    USER_RESET = "user.reset"
    USER_CONFIRM = "user.confirm"
    # clients
    CLIENT_ADD = "client.add"
    CLIENT_EDIT = "client.edit"
    CLIENT_LIST = "client.list"
    CLIENT_SHOW = "client.show"
    CLIENT_ROTATE_KEY = "client.rotate_key"
    CLIENT_ASSIGN = "client.assign"
    CLIENT_UNASSIGN = "client.unassign"
    CLIENT_ASSIGN_TEAM = "client.assign_team"
    CLIENT_UNASSIGN_TEAM = "client.unassign_team"
    # teams (docs/identity.md, "Teams")
    TEAM_ADD = "team.add"
    TEAM_LIST = "team.list"
    TEAM_SHOW = "team.show"
    TEAM_RM = "team.rm"
    TEAM_MEMBER_ADD = "team.member_add"
    TEAM_MEMBER_RM = "team.member_rm"
    # who can reach what
    ACCESS_VIEW = "access.view"
    # SLA lifecycle
    SLA_SHOW = "sla.show"
    SLA_RENEW = "sla.renew"
    SLA_EXPIRE = "sla.expire"
    SLA_REQUEST_SHRED = "sla.request_shred"
    SLA_APPROVE_SHRED = "sla.approve_shred"
    SLA_UPCOMING = "sla.upcoming"
    SLA_REQUESTS = "sla.requests"  # the approvals queue: open two-person requests
    SLA_SWEEP = "sla.sweep"
    SLA_CERTIFICATE = "sla.certificate"
    SLA_SET_MIN_GRACE = "sla.set_min_grace"
    SLA_APPROVE_MIN_GRACE = "sla.approve_min_grace"
    SLA_IMPORT = "sla.import"  # contract dates from a PSA export (each change is a renew or expire)
    SLA_CONTRACT_EVENT = "sla.contract_event"  # a signed PSA webhook event
    # PSA integrations (the webhook's HMAC secrets)
    INTEGRATION_ADD = "integration.add"
    INTEGRATION_LIST = "integration.list"
    INTEGRATION_RM = "integration.rm"
    # secrets (need-to-know)
    SECRET_PUT = "secret.put"
    SECRET_GET = "secret.get"
    SECRET_LIST = "secret.list"
    SECRET_HISTORY = "secret.history"
    SECRET_RM = "secret.rm"
    SECRET_IMPORT = "secret.import"
    SECRET_EXPORT = "secret.export"
    SECRET_EDIT = "secret.edit"
    SECRET_RESTORE = "secret.restore"
    SECRET_SEARCH = "secret.search"
    SECRET_ATTACH = "secret.attach"
    # audit
    AUDIT_LOG = "audit.log"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_EXPORT = "audit.export"
    AUDIT_REPORT = "audit.report"
    AUDIT_PRUNE = "audit.prune"
    AUDIT_RECOVER = "audit.recover"  # acknowledge an integrity alarm (docs/audit.md section 3)
    # vault operations (ciphertext only)
    SYNC = "sync"
    DOCTOR = "doctor"
    # custody and backups (docs/sla.md section 6): keys and ciphertext, never a secret value
    CUSTODY_SHOW = "custody.show"
    CUSTODY_SET = "custody.set"
    BACKUP = "backup"
    RESTORE = "backup.restore"


class AuditEvent(_StrConstants):
    """Audit actions that are not authorization decisions of :data:`PERMISSIONS`: identity events,
    unseal-slot changes, the service's unseal and the shred's certificate event. With
    :class:`Action` they are every ``action`` the audit log holds (docs/audit.md)."""

    AUTH_LOGIN = "auth.login"
    AUTH_SESSION = "auth.session"
    AUTH_STEPUP = "auth.stepup"
    AUTH_LOGOUT = "auth.logout"
    AUTH_PASSWD = "auth.passwd"
    AUTH_ENROLL = "auth.enroll"
    AUTH_LOCKOUT = "auth.lockout"
    AUTH_TOTP_REPLAY = "auth.totp_replay"
    AUTH_RECOVERY_CODE = "auth.recovery_code"
    SLOT_ADD = "slot.add"
    SLOT_REMOVE = "slot.remove"
    SLOT_MIGRATE = "slot.migrate"
    SERVICE_UNSEAL = "service.unseal"
    SLA_SHRED = "sla.shred"
    #: the vault's rows got their MACs (init, or the first unseal after the upgrade: issue 12)
    INTEGRITY_ROW_MACS = "integrity.row_macs"
    #: a row a decision read failed its MAC (vault.store.rowmac): refused, exit 6
    INTEGRITY_ROW_FAILURE = "integrity.row_failure"
    #: the vault had two enrolled admins for the first time: the bootstrap window is closed, in the
    #: hash chain as well as in the sealed mark (vault.audit.log.AuditLog._advance; review6 R6-1)
    INTEGRITY_BOOTSTRAP_CLOSED = "integrity.bootstrap_closed"


ADMIN, ACCOUNT_MANAGER, ENGINEER, REVIEWER = "admin", "account_manager", "engineer", "security_reviewer"
#: the role of a PSA integration's principal (``integration:NAME``, authenticated by the HMAC
#: signature of its webhook events): it may move an SLA end and nothing else
INTEGRATION = "integration"
_ = frozenset

#: The role table of docs/spec.md §6. An action absent here is refused to everyone.
PERMISSIONS: dict[Action, frozenset[str]] = {
    Action.USER_ADD: _({ADMIN}),
    Action.USER_LIST: _({ADMIN}),
    Action.USER_SHOW: _({ADMIN}),
    Action.USER_DISABLE: _({ADMIN}),
    Action.USER_ENABLE: _({ADMIN}),
    Action.USER_GRANT: _({ADMIN}),
    Action.USER_REVOKE: _({ADMIN}),
    Action.USER_UNLOCK: _({ADMIN}),
    Action.USER_RESET_TOTP: _({ADMIN}),
    Action.USER_TRAIN: _({ADMIN, ACCOUNT_MANAGER}),
    Action.USER_APPROVE: _({ADMIN}),
    Action.USER_RESET: _({ADMIN}),
    Action.USER_CONFIRM: _({ADMIN, ACCOUNT_MANAGER}),
    Action.CLIENT_ADD: _({ACCOUNT_MANAGER}),
    Action.CLIENT_EDIT: _({ACCOUNT_MANAGER}),
    Action.CLIENT_ROTATE_KEY: _({ACCOUNT_MANAGER}),
    Action.CLIENT_LIST: _({ACCOUNT_MANAGER, ENGINEER, REVIEWER}),
    Action.CLIENT_SHOW: _({ACCOUNT_MANAGER, ENGINEER, REVIEWER}),
    Action.CLIENT_ASSIGN: _({ADMIN, ACCOUNT_MANAGER}),
    Action.CLIENT_UNASSIGN: _({ADMIN, ACCOUNT_MANAGER}),
    Action.CLIENT_ASSIGN_TEAM: _({ADMIN, ACCOUNT_MANAGER}),
    Action.CLIENT_UNASSIGN_TEAM: _({ADMIN, ACCOUNT_MANAGER}),
    Action.TEAM_ADD: _({ADMIN, ACCOUNT_MANAGER}),
    Action.TEAM_LIST: _({ADMIN, ACCOUNT_MANAGER, REVIEWER}),
    Action.TEAM_SHOW: _({ADMIN, ACCOUNT_MANAGER, REVIEWER}),
    Action.TEAM_RM: _({ADMIN, ACCOUNT_MANAGER}),
    Action.TEAM_MEMBER_ADD: _({ADMIN, ACCOUNT_MANAGER}),
    Action.TEAM_MEMBER_RM: _({ADMIN, ACCOUNT_MANAGER}),
    Action.ACCESS_VIEW: _({ADMIN, REVIEWER}),
    Action.SLA_SHOW: _({ACCOUNT_MANAGER}),
    Action.SLA_RENEW: _({ACCOUNT_MANAGER, INTEGRATION}),
    Action.SLA_EXPIRE: _({ACCOUNT_MANAGER, INTEGRATION}),
    Action.SLA_IMPORT: _({ACCOUNT_MANAGER}),
    Action.SLA_CONTRACT_EVENT: _({INTEGRATION}),
    Action.INTEGRATION_ADD: _({ADMIN}),
    Action.INTEGRATION_LIST: _({ADMIN, ACCOUNT_MANAGER, REVIEWER}),
    Action.INTEGRATION_RM: _({ADMIN}),
    Action.SLA_REQUEST_SHRED: _({ACCOUNT_MANAGER}),
    Action.SLA_APPROVE_SHRED: _({ADMIN, ACCOUNT_MANAGER}),
    Action.SLA_UPCOMING: _({ACCOUNT_MANAGER}),
    Action.SLA_REQUESTS: _({ADMIN, ACCOUNT_MANAGER}),
    Action.SLA_SWEEP: _({ACCOUNT_MANAGER, SYSTEM_ROLE}),
    Action.SLA_CERTIFICATE: _({ACCOUNT_MANAGER, REVIEWER}),
    Action.SLA_SET_MIN_GRACE: _({ADMIN, ACCOUNT_MANAGER}),
    Action.SLA_APPROVE_MIN_GRACE: _({ADMIN, ACCOUNT_MANAGER}),
    Action.SECRET_PUT: _({ENGINEER}),
    Action.SECRET_GET: _({ENGINEER}),
    Action.SECRET_LIST: _({ENGINEER}),
    Action.SECRET_HISTORY: _({ENGINEER}),
    Action.SECRET_RM: _({ENGINEER}),
    Action.SECRET_IMPORT: _({ENGINEER}),
    Action.SECRET_EXPORT: _({ENGINEER}),
    Action.SECRET_EDIT: _({ENGINEER}),
    Action.SECRET_RESTORE: _({ENGINEER}),
    Action.SECRET_SEARCH: _({ENGINEER}),
    Action.SECRET_ATTACH: _({ENGINEER}),
    Action.AUDIT_LOG: _({REVIEWER}),
    Action.AUDIT_VERIFY: _({REVIEWER, SYSTEM_ROLE}),
    # system: an unattended SIEM forwarder on the vault's host, holding the key file (docs/audit.md)
    Action.AUDIT_EXPORT: _({REVIEWER, SYSTEM_ROLE}),
    Action.AUDIT_REPORT: _({REVIEWER}),
    Action.AUDIT_PRUNE: _({REVIEWER}),
    Action.AUDIT_RECOVER: _({ADMIN}),
    Action.SYNC: _({ADMIN, SYSTEM_ROLE}),
    Action.DOCTOR: _({ADMIN, SYSTEM_ROLE}),
    Action.CUSTODY_SHOW: _({ADMIN, REVIEWER}),
    Action.CUSTODY_SET: _({ADMIN}),
    Action.BACKUP: _({ADMIN, SYSTEM_ROLE}),
    Action.RESTORE: _({ADMIN, SYSTEM_ROLE}),
}

#: Actions on one client's secrets: the role is necessary, need-to-know is also required.
NEED_TO_KNOW: frozenset[Action] = frozenset(
    {
        Action.SECRET_PUT,
        Action.SECRET_GET,
        Action.SECRET_LIST,
        Action.SECRET_HISTORY,
        Action.SECRET_RM,
        Action.SECRET_IMPORT,
        Action.SECRET_EXPORT,
        Action.SECRET_EDIT,
        Action.SECRET_RESTORE,
        Action.SECRET_SEARCH,
        Action.SECRET_ATTACH,
    }
)

#: Reading a secret value needs a TOTP verified recently (step-up, docs/spec.md §5).
STEP_UP: frozenset[Action] = frozenset({Action.SECRET_GET, Action.SECRET_EXPORT})

#: Administrative actions that also need a TOTP verified recently: acknowledging an integrity
#: alarm restarts what the audit signature proves (docs/audit.md section 3).
ADMIN_STEP_UP: frozenset[Action] = frozenset({Action.AUDIT_RECOVER})

#: Changes nobody may make to their own account: granting roles, recording training, unlocking,
#: re-enabling, assigning to a client. Each needs a second person, so an admin cannot turn
#: themselves into an engineer with need-to-know (docs/spec.md §6: admin never implies reading secrets).
NOT_ON_ONESELF: frozenset[Action] = frozenset(
    {
        Action.USER_GRANT,
        Action.USER_TRAIN,
        Action.USER_UNLOCK,
        Action.USER_ENABLE,
        Action.CLIENT_ASSIGN,
        Action.USER_CONFIRM,
        Action.USER_APPROVE,
        Action.USER_RESET,
    }
)

#: Rule 2 (docs/identity.md, "Separation of duties"): whoever requested or approved an account's
#: creation or its latest factor reset held, or could have held, its enrollment code, so they may
#: not vouch for it: grant it roles, record its training, assign it to a client, or re-confirm it
#: after a full reset. A second, unrelated person must.
LINEAGE_BOUND: frozenset[Action] = frozenset(
    {Action.USER_GRANT, Action.USER_TRAIN, Action.CLIENT_ASSIGN, Action.USER_CONFIRM}
)

#: Actions that give people need-to-know through a team (docs/identity.md, "Teams"): adding a
#: member (the new member) and assigning a team to a client (every current member). The rules of
#: a direct assignment apply to each of those people: nobody adds themselves to a team, nobody
#: assigns a team they belong to, and nobody vouches so for an account whose lineage they are in.
TEAM_BOUND: frozenset[Action] = frozenset({Action.TEAM_MEMBER_ADD, Action.CLIENT_ASSIGN_TEAM})


class Reach(NamedTuple):
    """One person a team action gives need-to-know: their name and lineage (:func:`facts.lineage`)."""

    name: str
    lineage: frozenset[str] = frozenset()
    #: who was handed its enrollment code (:func:`facts.code_holders`, review2 S3)
    holders: frozenset[str] = frozenset()


class TeamPath(NamedTuple):
    """Need-to-know through a team: the acting user is (or was) a member of ``team``, which is (or
    was) assigned to the client."""

    team: str
    member: bool  # the membership is open and the team not removed
    assignment_ends_at: datetime | None = None
    assignment_ended: bool = False


#: Engineers see only the clients they are assigned to (docs/spec.md §6: "list/show own").
OWN_CLIENTS_ONLY: dict[Action, frozenset[str]] = {
    Action.CLIENT_SHOW: _({ENGINEER}),
}


class AccountFacts(NamedTuple):
    """The acting user's account state, read fresh for this decision."""

    disabled: bool = False
    locked_until: datetime | None = None
    training_valid_until: datetime | None = None
    session_valid: bool = True
    session_reason: str = ""
    stepup_at: datetime | None = None
    #: the roles held right now (a grant or revoke takes effect at once); None: use the principal's
    roles: frozenset[str] | None = None
    #: a full factor reset was approved and the account's roles are not re-confirmed yet
    suspended: bool = False
    #: the vault was made with ``init --single-operator``: the two-person rules are off
    single_operator: bool = False


class ClientFacts(NamedTuple):
    """One client's need-to-know facts for the acting user."""

    name: str
    state: str  # active | expired | shred_pending | shredding | shredded
    assigned: bool = False
    assignment_ends_at: datetime | None = None
    assignment_ended: bool = False
    #: need-to-know through teams (each path checked like a direct assignment)
    teams: tuple[TeamPath, ...] = ()


def distinct_people(
    actor: str,
    other: str,
    other_lineage: frozenset[str],
    *,
    single_operator: bool = False,
    actor_lineage: frozenset[str] = frozenset(),
) -> str | None:
    """Whether ``actor`` counts as a second person to ``other`` (the requester of an early shred,
    a settings change, an account creation or reset): not the same name, not in ``other``'s
    lineage (who could hold ``other``'s account) and ``other`` not in ``actor``'s (review R9:
    alice's second account is no second person to alice). Callers pass the transitive lineages
    (:func:`vault.identity.facts.lineage_closure`). Returns the reason they do not, or None."""
    if single_operator:
        return None
    if actor == other:
        return f"{actor} made the request: another person must approve it"
    if actor in other_lineage:
        return (
            f"{actor} requested or approved {other}'s account (or an account in its lineage), so "
            f"does not count as a second person to {other}: someone else must approve"
        )
    if other in actor_lineage:
        return (
            f"{other} requested or approved {actor}'s account (or an account in its lineage), so "
            f"{actor} does not count as a second person to {other}: someone else must approve"
        )
    return None


def held_by_the_actors_maker(
    actor: str, subject: str, actor_chain: frozenset[str], subject_holders: frozenset[str]
) -> str | None:
    """Review2 S3, the actor side of rule 2 and the team rule made transitive: someone who asked
    for the actor's account (or for an account up its chain) was handed ``subject``'s enrollment
    code. Then one person may hold both (alice's second account alice2 vouching for nina, whose
    code alice held). Returns the reason, or None."""
    both = sorted(actor_chain & subject_holders)
    if not both:
        return None
    return f"{both[0]} asked for {actor}'s account (or one up its lineage) and was handed {subject}'s code"


class Decision(NamedTuple):
    allowed: bool
    reason: str
    #: for a denial: "denied" (exit 4) or "client" (exit 7: the client's SLA is not active)
    kind: str = "allowed"


def allowed_roles(action: Action) -> frozenset[str]:
    return PERMISSIONS.get(action, frozenset())


def sees_all_clients(roles: frozenset[str]) -> bool:
    """Whether ``client list`` shows every client to these roles (engineers alone: only their own)."""
    listing = allowed_roles(Action.CLIENT_LIST) & roles
    return bool(listing - OWN_CLIENTS_ONLY[Action.CLIENT_SHOW])


def decide(
    principal: Principal,
    action: Action,
    *,
    now: datetime,
    account: AccountFacts | None = None,
    client: ClientFacts | None = None,
    stepup_window_seconds: int = 900,
    subject: str | None = None,
    subject_lineage: frozenset[str] = frozenset(),
    reaches: tuple[Reach, ...] = (),
    actor_chain: frozenset[str] = frozenset(),
    subject_holders: frozenset[str] = frozenset(),
) -> Decision:
    """Deny by default; the first failed condition is the reason. ``subject`` is the user an
    administrative action changes, if any; ``subject_lineage`` who requested or approved its
    creation and latest factor reset (:data:`LINEAGE_BOUND`). ``reaches``: the people a team
    action gives need-to-know (:data:`TEAM_BOUND`). ``actor_chain``: who asked for the actor's
    account, transitively (:func:`vault.identity.facts.requester_chain`); ``subject_holders``:
    who was handed the subject's enrollment code (review2 S3: alice's second account alice2 does
    not vouch for an account whose code alice held)."""
    who = principal.name
    held = principal.roles if account is None or account.roles is None else account.roles
    roles = allowed_roles(action) & held
    if not roles:
        needed = " or ".join(sorted(allowed_roles(action))) or "no role"
        return Decision(False, f"{who} has no role allowed to {action.value} (needs {needed})", "denied")

    if not principal.is_system:
        if account is None:
            return Decision(False, f"no account facts for {who}", "denied")
        if account.disabled:
            return Decision(False, f"{who} is disabled", "denied")
        # a lock stops new logins only: it never cuts a live session (a stranger's failed
        # logins for a name must not take the account's owner offline)
        if not account.session_valid:
            return Decision(False, account.session_reason or f"{who} has no valid session", "denied")
        if account.suspended:
            return Decision(
                False,
                f"{who}'s roles are suspended after a factor reset until another person re-confirms them",
                "denied",
            )

    two_person = not (account is not None and account.single_operator)
    if two_person and action in NOT_ON_ONESELF and subject is not None and subject == who:
        return Decision(
            False,
            f"{who} cannot {action.value.split('.')[1]} themselves: "
            f"another {' or '.join(sorted(allowed_roles(action))).replace('_', ' ')} must do it",
            "denied",
        )
    if two_person and action in LINEAGE_BOUND and subject is not None and who in subject_lineage:
        return Decision(
            False,
            f"{who} requested or approved {subject}'s account (or its latest factor reset), so "
            f"cannot {action.value.split('.')[1]} it: a third person must",
            "denied",
        )

    if two_person and action in LINEAGE_BOUND and subject is not None:
        why = held_by_the_actors_maker(who, subject, actor_chain, subject_holders)
        if why is not None:
            return Decision(
                False,
                f"{why}, so {who} cannot {action.value.split('.')[1]} it: a third person must",
                "denied",
            )

    if two_person and action in TEAM_BOUND:
        for person in reaches:
            if person.name == who:
                what = (
                    "add themselves to a team"
                    if action is Action.TEAM_MEMBER_ADD
                    else "assign a team they are a member of"
                )
                return Decision(
                    False,
                    f"{who} cannot {what}: another admin or account manager must do it",
                    "denied",
                )
            if who in person.lineage:
                return Decision(
                    False,
                    f"{who} requested or approved {person.name}'s account (or its latest factor "
                    f"reset), so cannot give it need-to-know through a team: a third person must",
                    "denied",
                )
            why = held_by_the_actors_maker(who, person.name, actor_chain, person.holders)
            if why is not None:
                return Decision(
                    False,
                    f"{why}, so {who} cannot give it need-to-know through a team: a third person must",
                    "denied",
                )

    if (
        action in ADMIN_STEP_UP
        and not principal.is_system
        and (
            account is None
            or account.stepup_at is None
            or ((now - account.stepup_at).total_seconds() >= stepup_window_seconds)
        )
    ):
        return Decision(
            False,
            f"step-up needed: TOTP not verified in the last {stepup_window_seconds // 60} minutes",
            "stepup",
        )

    if action in NEED_TO_KNOW:
        if client is None:
            return Decision(False, "no client given", "denied")
        return _need_to_know(who, action, now, account, client, stepup_window_seconds)

    if (
        action in OWN_CLIENTS_ONLY
        and roles <= OWN_CLIENTS_ONLY[action]
        and (client is None or not assignment_path(client, now)[0])
    ):
        name = client.name if client else "that client"
        return Decision(False, f"{who} is not assigned to {name}", "denied")
    return Decision(True, f"role {sorted(roles)[0]}")


def _need_to_know(
    who: str,
    action: Action,
    now: datetime,
    account: AccountFacts | None,
    client: ClientFacts,
    stepup_window_seconds: int,
) -> Decision:
    if account is None:
        return Decision(False, f"no account facts for {who}", "denied")
    reached, via = assignment_path(client, now)
    if not reached:
        return Decision(False, _no_path(who, client), "denied")
    if account.training_valid_until is None:
        return Decision(False, f"{who} has no data-handling training on record", "denied")
    if now >= account.training_valid_until:
        return Decision(False, f"{who}'s data-handling training expired", "denied")
    if client.state != "active":
        return Decision(False, f"client {client.name} is {client.state.replace('_', ' ')}", "client")
    if action in STEP_UP and (
        account.stepup_at is None or (now - account.stepup_at).total_seconds() >= stepup_window_seconds
    ):
        return Decision(
            False,
            f"step-up needed: TOTP not verified in the last {stepup_window_seconds // 60} minutes",
            "stepup",
        )
    through = f" through team {via}" if via else ""
    return Decision(True, f"need-to-know: {who} assigned to {client.name}{through}, trained, SLA active")


def assignment_path(client: ClientFacts, now: datetime) -> tuple[bool, str | None]:
    """Whether an assignment gives need-to-know on the client at ``now``: (yes or no, the team it
    goes through, or None for a direct assignment)."""
    if (
        client.assigned
        and not client.assignment_ended
        and (client.assignment_ends_at is None or now < client.assignment_ends_at)
    ):
        return True, None
    for path in client.teams:
        if (
            path.member
            and not path.assignment_ended
            and (path.assignment_ends_at is None or now < path.assignment_ends_at)
        ):
            return True, path.team
    return False, None


def _no_path(who: str, client: ClientFacts) -> str:
    """Why no assignment, direct or through a team, gives ``who`` need-to-know on the client."""
    if client.assigned:
        return f"{who}'s assignment to {client.name} has ended"
    for path in client.teams:
        if not path.member:
            return f"{who} is no longer a member of team {path.team}, assigned to {client.name}"
    if client.teams:
        return f"team {client.teams[0].team}'s assignment to {client.name} has ended"
    return f"{who} is not assigned to {client.name}"


def permission_table() -> str:
    """The role table as Markdown (docs/identity.md, "Permission table"; regenerate it with
    ``python -m cli.permissions``; ``tests/core/test_policy.py`` checks the doc holds it)."""
    columns = (ADMIN, ACCOUNT_MANAGER, ENGINEER, REVIEWER, SYSTEM_ROLE, INTEGRATION)
    lines = [
        "| action | " + " | ".join(columns) + " | two-person rule |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for action in Action:
        roles = allowed_roles(action)
        cells = []
        for role in columns:
            if role not in roles:
                cells.append("")
            elif action in NEED_TO_KNOW:
                cells.append("need-to-know")
            elif role in OWN_CLIENTS_ONLY.get(action, frozenset()):
                cells.append("own clients")
            else:
                cells.append("yes")
        rules = []
        if action in NOT_ON_ONESELF:
            rules.append("not on oneself")
        if action in LINEAGE_BOUND:
            rules.append("not by the subject's lineage")
        if action in TEAM_BOUND:
            rules.append("not by a member of the team nor a member's lineage")
        if action in SECOND_PERSON:
            rules.append(SECOND_PERSON[action])
        if action in ADMIN_STEP_UP:
            rules.append("TOTP step-up")
        lines.append(f"| `{action.value}` | " + " | ".join(cells) + " | " + "; ".join(rules) + " |")
    return "\n".join(line.replace("|  |", "| |").replace("|  |", "| |") for line in lines) + "\n"


#: Actions that complete another person's request: who may not complete it (rule 1 and 4).
SECOND_PERSON: dict[Action, str] = {
    Action.USER_APPROVE: "not the requester; outside each other's lineage (transitive)",
    Action.SLA_APPROVE_SHRED: "not the requester; outside each other's lineage (transitive)",
    Action.SLA_APPROVE_MIN_GRACE: "not the requester; outside each other's lineage (transitive)",
}
