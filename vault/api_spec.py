"""The one operation registry: every operation of the facade's public surface, described once.

Each :class:`Op` says which facade method it is, its parameters (type, bounds, keyword-only,
default), whether it needs a session (``auth``), whether the caller's origin is passed, its
rate-limit class, how its result travels, and its summary. Everything else is derived from it:

* the HTTP server (:mod:`vault.server.routes`) builds one ``POST /v1/<service>/<method>`` route
  per entry with a request model made from ``params``, and dispatches it with one generic call;
* the OpenAPI document (``/openapi.json``) is FastAPI's description of those routes;
* the service client (:mod:`cli.service_client`) builds one proxy method per entry with the
  facade's own signature (``principal`` first when ``auth``), doing one HTTPS request;
* the CLI takes types and bounds from it (``param("clients.add", "grace_days").bounds``);
* the tests check the facade's signatures against it (``tests/server/test_registry.py``).

Facade methods that are not here are host-only (slots, doctor, the replica's configuration and
sign-in): the service client refuses them with one line.

This module imports nothing heavy: the service client imports it on every command.

Parameter types (JSON on the wire):

=============  ==========================================================================
``str``        a string
``int``        an integer within ``bounds``
``bool``       true / false
``when``       a date as text: ISO 8601 or relative (``+90d``, ``now``), parsed by the
               *service* with its own clock (the vault's clock is authoritative)
``since``      like ``when``, and a plain duration means that long ago (``30d``)
``duration``   ``30d``, ``12h``, ``45m``, ``2w``
``strlist``    a list of strings
``object``     a JSON object (a record's fields)
``bytes``      bytes, as standard base64 text (an attachment's content)
=============  ==========================================================================

Result codecs (``result``): ``json`` (the facade's dicts and lists as they are), ``none``,
``record`` (a :class:`vault.records.SecretRecord`), ``verify`` (a ``VerifyResult``),
``login`` (a login result: its token, and ``as_dict()`` without it) and ``attachment`` (a dict
whose ``data`` is bytes: base64 text on the wire).
"""

from __future__ import annotations

REQUIRED = object()
API_PREFIX = "/v1"
#: request bodies above this are refused with 413 (docs/service.md, "Limits")
MAX_BODY_BYTES = 2 * 1024 * 1024
#: strings (names, paths, codes, dates) longer than this are refused by validation (422)
MAX_STRING = 4096
#: an attachment is at most 25 MiB (vault.blob.MAX_ATTACHMENT); as base64 in a JSON body it takes
#: 4/3 of that plus the other parameters: the one route allowed a larger body (Op.body_limit;
#: docs/service.md, "Limits")
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_BASE64 = (MAX_ATTACHMENT_BYTES + 2) // 3 * 4
ATTACH_BODY_BYTES = MAX_BASE64 + 64 * 1024
INT64: tuple[int, int] = (-(2**63), 2**63 - 1)

# Param and Op are plain slotted classes rather than dataclasses or NamedTuples: ``cvault secret
# get`` in service mode imports this module on every run, and ``dataclasses`` (with ``copy``) plus
# building two dataclasses cost about 1.5 ms of its 25 ms budget, a NamedTuple class about 0.1 ms
# each (docs/performance.md). The class-level annotations are for type checkers.


class _Frozen:
    __slots__: tuple[str, ...] = ()

    def __init__(self, **values: object) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Frozen) and type(other) is type(self) and other._values() == self._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({args})"


class Param(_Frozen):
    __slots__ = ("name", "type", "default", "bounds", "keyword")
    name: str
    type: str
    default: object
    bounds: tuple[int, int] | None
    #: True if the facade takes it keyword-only (after ``*``)
    keyword: bool

    def __init__(
        self,
        name: str,
        type: str = "str",
        default: object = REQUIRED,
        bounds: tuple[int, int] | None = None,
        keyword: bool = False,
    ) -> None:
        super().__init__(name=name, type=type, default=default, bounds=bounds, keyword=keyword)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def limits(self) -> tuple[int, int]:
        """The bounds of an ``int`` (a signed 64-bit integer when the table gives none)."""
        return self.bounds or INT64


class Op(_Frozen):
    """One operation.

    ``auth``: the facade method takes the acting principal first (the server derives it from the
    bearer token). ``result``: the result codec (module docstring). ``local_only``: parameters the
    facade has but the API drops (progress callbacks). ``facade``: the facade method when it
    differs from ``method``. ``passes_origin``: the server passes ``origin=api:<address>`` (the
    audit log's origin of an unauthenticated call). ``rate_limit``: ``"login"`` puts the call under
    the per-address and per-user-name token buckets. ``transport``: ``"lines"`` when the facade
    writes lines through a ``write`` callback: the server collects them and sends
    ``{"lines": [...], "result": ...}``. ``client_side``: ``(facade method, adapter)``: a facade
    method the service client provides on top of this operation with one of its adapters, doing
    the local part itself (writing the export file). ``returns``: the name of the result's schema
    in :mod:`vault.api_schemas` (``"Name[]"``: a list of them; None: null), the OpenAPI
    document's 200 response. ``body_limit``: the largest request body of this operation when
    it is not :data:`MAX_BODY_BYTES` (attachments)."""

    __slots__ = (
        "service",
        "method",
        "params",
        "auth",
        "result",
        "summary",
        "local_only",
        "facade",
        "passes_origin",
        "rate_limit",
        "transport",
        "client_side",
        "returns",
        "body_limit",
    )
    service: str
    method: str
    params: tuple[Param, ...]
    auth: bool
    result: str
    summary: str
    local_only: tuple[str, ...]
    facade: str | None
    passes_origin: bool
    rate_limit: str | None
    transport: str
    client_side: tuple[str, str] | None
    returns: str | None
    body_limit: int | None

    def __init__(
        self,
        service: str,
        method: str,
        params: tuple[Param, ...] = (),
        auth: bool = True,
        result: str = "json",
        summary: str = "",
        local_only: tuple[str, ...] = (),
        facade: str | None = None,
        passes_origin: bool = False,
        rate_limit: str | None = None,
        transport: str = "json",
        client_side: tuple[str, str] | None = None,
        returns: str | None = None,
        body_limit: int | None = None,
    ) -> None:
        super().__init__(
            service=service,
            method=method,
            params=params,
            auth=auth,
            result=result,
            summary=summary,
            local_only=local_only,
            facade=facade,
            passes_origin=passes_origin,
            rate_limit=rate_limit,
            transport=transport,
            client_side=client_side,
            returns=returns,
            body_limit=body_limit,
        )

    @property
    def facade_method(self) -> str:
        return self.facade or self.method

    @property
    def name(self) -> str:
        return f"{self.service}.{self.method}"

    @property
    def path(self) -> str:
        return f"{API_PREFIX}/{self.service}/{self.method.replace('_', '-')}"

    @property
    def operation_id(self) -> str:
        return f"{self.service}_{self.method}"


def P(
    name: str,
    type_: str = "str",
    default: object = REQUIRED,
    bounds: tuple[int, int] | None = None,
    keyword: bool = False,
) -> Param:
    return Param(name, type_, default, bounds, keyword)


def K(name: str, type_: str = "str", default: object = None, bounds: tuple[int, int] | None = None) -> Param:
    return Param(name, type_, default, bounds, True)


PROGRESS = ("progress",)
#: the caller's own write, run first in the change's transaction (a contract event's claim)
WITHIN = ("within",)
#: parameters several operations share, each stated once (the library's own checks:
#: :func:`grace_days_refusal` for client add, sla renew and the minimum grace period,
#: vault.records.service.MAX_VERSION; tests/server/test_registry.py)
GRACE_BOUNDS: tuple[int, int] = (0, 3650)
VERSION_BOUNDS: tuple[int, int] = (1, 2**31)
GRACE_DAYS = K("grace_days", "int", None, GRACE_BOUNDS)


def grace_days_refusal(days: object, what: str = "grace period") -> str | None:
    """The one line refusing ``days`` as a grace period (``what``: which one), or None when it
    is an integer within :data:`GRACE_BOUNDS`: the library's check, so the API, the CLI and the
    facade refuse exactly the same values with the same words."""
    low, high = GRACE_BOUNDS
    if isinstance(days, int) and not isinstance(days, bool) and low <= days <= high:
        return None
    return f"{what} must be {low} to {high} days"


MIN_GRACE_DAYS = P("days", "int", REQUIRED, GRACE_BOUNDS)
VERSION = P("version", "int", None, VERSION_BOUNDS)
WORKERS = K("workers", "int", 8, (1, 32))

OPERATIONS: tuple[Op, ...] = (
    # --- sessions (users.login and users.enroll need no token) --------------------------------
    Op(
        "users",
        "login",
        (P("name"), P("password"), K("totp"), K("recovery_code")),
        auth=False,
        result="login",
        passes_origin=True,
        rate_limit="login",
        returns="Login",
        summary="Log in (password + TOTP or recovery code): a bearer session token",
    ),
    Op(
        "users",
        "enroll",
        (P("name"), P("code"), P("password")),
        auth=False,
        passes_origin=True,
        rate_limit="login",
        returns="Enrollment",
        summary="Redeem an enrollment code: password, TOTP secret, recovery codes",
    ),
    Op(
        "users",
        "step_up",
        (P("code", default=None), K("recovery_code")),
        returns="StepUp",
        summary="Verify a fresh TOTP code for reading secrets",
    ),
    Op("users", "logout", result="none", summary="End this session"),
    Op(
        "users",
        "logout_all",
        returns="LogoutAll",
        summary="End every session of one's own (sign out everywhere)",
    ),
    Op("users", "whoami", returns="WhoAmI", summary="The session's user, roles and expiry times"),
    Op("users", "passwd", (P("current"), P("new")), result="none", summary="Change one's password"),
    # --- staff administration ---------------------------------------------------------------------
    Op(
        "users",
        "add",
        (P("name"), P("roles", "strlist")),
        returns="AccountRequest",
        summary="Request a new account (pending until another admin approves; bootstrap: the code)",
    ),
    Op(
        "users",
        "approve",
        (P("name"),),
        returns="EnrollmentCode",
        summary="Approve another admin's account request or full reset (the code, to the approver)",
    ),
    Op(
        "users",
        "reset",
        (P("name"),),
        returns="AccountRequest",
        summary="Request a full reset (password and TOTP) of an account",
    ),
    Op(
        "users",
        "confirm",
        (P("name"),),
        returns="UserChange",
        summary="Re-confirm an account's roles and assignments after its full reset",
    ),
    Op("users", "list", returns="UserView[]", summary="List users"),
    Op("users", "show", (P("name"),), returns="UserDetail", summary="Show one user"),
    Op("users", "disable", (P("name"),), returns="UserChange", summary="Disable a user"),
    Op("users", "enable", (P("name"),), returns="UserChange", summary="Enable a user"),
    Op("users", "grant", (P("name"), P("role")), returns="UserChange", summary="Grant a role"),
    Op("users", "revoke", (P("name"), P("role")), returns="UserChange", summary="Revoke a role"),
    Op("users", "unlock", (P("name"),), returns="UserChange", summary="Unlock a user"),
    Op(
        "users",
        "reset_totp",
        (P("name"),),
        returns="EnrollmentCode",
        summary="Reset a user's TOTP (re-enrollment code; the current password is still needed)",
    ),
    Op(
        "users",
        "train",
        (P("name"), P("until", "when")),
        returns="UserChange",
        summary="Record a training attestation",
    ),
    # --- assignments and the who-can-reach-what view ----------------------------------------------
    Op(
        "access",
        "assign",
        (P("client_name"), P("user_name"), P("until", "when", None)),
        returns="Assignment",
        summary="Assign an engineer to a client",
    ),
    Op(
        "access",
        "unassign",
        (P("client_name"), P("user_name")),
        returns="Assignment",
        summary="End an assignment",
    ),
    Op(
        "access",
        "client_access",
        (P("client_name"),),
        returns="ClientAccess",
        summary="Who can read this client now",
    ),
    Op(
        "access",
        "user_access",
        (P("user_name"),),
        returns="UserAccess",
        summary="Which clients this user can read now",
    ),
    # --- teams (docs/identity.md, "Teams") -----------------------------------------------------------
    Op(
        "teams",
        "add",
        (P("name"), K("description", "str", "")),
        returns="TeamView",
        summary="Create a team",
    ),
    Op("teams", "list", returns="TeamView[]", summary="List teams with their members and clients"),
    Op(
        "teams",
        "show",
        (P("name"),),
        returns="TeamDetail",
        summary="A team: members, former members, clients",
    ),
    Op("teams", "rm", (P("name"),), returns="TeamRemoved", summary="Remove a team (its access ends)"),
    Op(
        "teams",
        "member_add",
        (P("team"), P("user_name")),
        returns="TeamMembership",
        summary="Add an engineer to a team (not oneself; not by the engineer's lineage)",
    ),
    Op(
        "teams",
        "member_rm",
        (P("team"), P("user_name")),
        returns="TeamMembership",
        summary="Remove a member from a team",
    ),
    Op(
        "teams",
        "assign",
        (P("client_name"), P("team"), P("until", "when", None)),
        returns="TeamAssignment",
        summary="Assign a team to a client (not by a member nor a member's lineage)",
    ),
    Op(
        "teams",
        "unassign",
        (P("client_name"), P("team")),
        returns="TeamAssignment",
        summary="End a team's assignment to a client",
    ),
    Op(
        "teams",
        "memberships",
        (P("user_name"),),
        returns="UserTeam[]",
        summary="The teams a user belongs to, with the clients each reaches",
    ),
    # --- contract dates from the PSA (docs/sla.md, "Contract dates from the PSA") ---------------------
    Op(
        "contracts",
        "import_contracts",
        (P("lines", "strlist"), K("dry_run", "bool", False)),
        returns="ContractImport",
        summary="SLA ends from a PSA export (CSV or JSON lines): the diff, applied unless dry_run",
    ),
    Op(
        "integrations",
        "add",
        (P("name"),),
        returns="IntegrationSecret",
        summary="A PSA integration and its HMAC secret (shown once)",
    ),
    Op("integrations", "list", returns="IntegrationView[]", summary="PSA integrations (no secrets)"),
    Op(
        "integrations",
        "rm",
        (P("name"),),
        returns="IntegrationRemoved",
        summary="Remove a PSA integration (its secret is destroyed)",
    ),
    # --- clients --------------------------------------------------------------------------------------
    Op(
        "clients",
        "add",
        (P("name"), K("sla_end", "when", REQUIRED), GRACE_DAYS),
        returns="ClientView",
        summary="Create a client",
    ),
    Op("clients", "list", returns="ClientView[]", summary="List clients"),
    Op("clients", "show", (P("name"),), returns="ClientView", summary="Show one client"),
    Op(
        "clients",
        "rotate_key",
        (P("name"),),
        local_only=PROGRESS,
        returns="KeyRotation",
        summary="Rotate a client key",
    ),
    # --- secrets ----------------------------------------------------------------------------------------
    Op(
        "secrets",
        "put",
        (P("client_name"), P("path"), P("kind"), P("fields", "object"), K("replace", "bool", False)),
        returns="Stored",
        summary="Store a new version of a record (refuses to drop fields unless replace)",
    ),
    Op(
        "secrets",
        "edit",
        (P("client_name"), P("path"), K("set_fields", "object", None), K("unset", "strlist", ())),
        returns="Stored",
        summary="A new version with only the given fields changed or unset",
    ),
    Op(
        "secrets",
        "restore",
        (P("client_name"), P("path"), K("version", "int", REQUIRED, VERSION_BOUNDS)),
        returns="Stored",
        summary="Make an older version's content current (also undeletes)",
    ),
    Op(
        "secrets",
        "search",
        (P("term"), K("client", "str", None), K("kind", "str", None)),
        returns="SearchHit[]",
        summary="Records matching a term across the clients the caller may read now (no values)",
    ),
    Op(
        "secrets",
        "list_all",
        (),
        returns="RecordListingAll[]",
        summary="The records of every client the caller may read now (no values)",
    ),
    Op(
        "secrets",
        "otp",
        (P("client_name"), P("path")),
        returns="OtpCode",
        summary="The current TOTP code of a record's totp seed (a read; the seed stays)",
    ),
    Op(
        "secrets",
        "attach",
        (P("client_name"), P("path"), P("data", "bytes"), K("name", "str", REQUIRED)),
        returns="Attached",
        body_limit=ATTACH_BODY_BYTES,
        summary="Attach a file (at most 25 MiB, base64) to a record, as a new version",
    ),
    Op(
        "secrets",
        "detach",
        (P("client_name"), P("path"), K("name", "str", REQUIRED)),
        returns="Detached",
        summary="A new version without one attachment (older versions keep it)",
    ),
    Op(
        "secrets",
        "attachment",
        (P("client_name"), P("path"), P("name"), VERSION),
        result="attachment",
        returns="Attachment",
        summary="Read an attached file (a read, like get; its bytes as base64)",
    ),
    Op(
        "secrets",
        "get",
        (P("client_name"), P("path"), VERSION),
        result="record",
        returns="SecretRecord",
        summary="Read a record (the only operation returning values)",
    ),
    Op(
        "secrets",
        "list",
        (P("client_name"),),
        returns="RecordListing[]",
        summary="List a client's records (no values)",
    ),
    Op(
        "secrets",
        "history",
        (P("client_name"), P("path")),
        returns="RecordVersion[]",
        summary="Kept versions of a record",
    ),
    Op(
        "secrets",
        "rm",
        (P("client_name"), P("path"), K("purge", "bool", False)),
        returns="Removed",
        summary="Delete a record, or crypto-shred it with purge",
    ),
    Op(
        "secrets",
        "import_records",
        (P("client_name"), P("lines", "strlist"), K("replace", "bool", False)),
        local_only=PROGRESS,
        returns="Imported",
        summary="Import JSON Lines records in one transaction",
    ),
    Op(
        "secrets",
        "export_records",
        (P("client_name"),),
        client_side=("export", "export_file"),
        returns="Export",
        summary="A client's current records, decrypted (the CLI writes the export file)",
    ),
    # --- SLA --------------------------------------------------------------------------------------------
    Op("sla", "show", (P("name"),), returns="SlaView", summary="A client's SLA state"),
    Op(
        "sla",
        "renew",
        (P("name"), P("until", "when"), GRACE_DAYS),
        local_only=WITHIN,
        returns="SlaView",
        summary="New SLA end",
    ),
    Op(
        "sla",
        "expire",
        (P("name"), K("reason", "str", REQUIRED)),
        local_only=WITHIN,
        returns="SlaView",
        summary="End the SLA now",
    ),
    Op(
        "sla",
        "request_shred",
        (P("name"), K("reason", "str", REQUIRED)),
        returns="SlaView",
        summary="Request an early shred",
    ),
    Op(
        "sla",
        "approve_shred",
        (P("name"),),
        returns="SlaView",
        summary="Approve another person's early shred",
    ),
    Op(
        "sla",
        "min_grace",
        (),
        returns="MinGrace",
        summary="The vault's minimum grace period and a pending change",
    ),
    Op(
        "sla",
        "request_min_grace",
        (MIN_GRACE_DAYS,),
        returns="MinGrace",
        summary="Request a change of the minimum grace period (two-person)",
    ),
    Op(
        "sla",
        "approve_min_grace",
        (MIN_GRACE_DAYS,),
        returns="MinGrace",
        summary="Approve another person's change of the minimum grace period",
    ),
    Op(
        "sla",
        "upcoming",
        (P("within", "duration", "30d"),),
        returns="Upcoming[]",
        summary="SLA ends and shreds due soon",
    ),
    Op(
        "sla",
        "overview",
        (
            K("name_contains", "str", ""),
            K("state", "str", ""),
            K("engineer", "str", ""),
            K("within_days", "int", None, (0, 3650)),
            K("sort", "str", "client"),
            K("descending", "bool", False),
            K("offset", "int", 0, (0, 2**31)),
            K("limit", "int", None, (0, 2**31)),
        ),
        returns="ClientOverviewPage",
        summary="A page of clients with SLA state, days left, engineers, record count (the console's table)",
    ),
    Op(
        "sla",
        "requests",
        returns="TwoPersonRequest[]",
        summary="Open two-person requests: early shreds and setting changes (the approvals queue)",
    ),
    Op(
        "sla",
        "sweep",
        (K("dry_run", "bool", False), K("every", "duration")),
        local_only=PROGRESS,
        returns="Sweep",
        summary="Shred every client due",
    ),
    Op(
        "sla",
        "certificate",
        (P("name"),),
        returns="Certificate",
        summary="A shredded client's signed certificate",
    ),
    # --- audit --------------------------------------------------------------------------------------------
    Op("audit", "public_key", auth=False, returns="PublicKey", summary="The vault's audit public key"),
    Op("audit", "checkpoint", returns="Checkpoint", summary="Sign the log's head now"),
    Op(
        "audit",
        "recover",
        (P("acknowledge", "int", bounds=(1, 2**62)),),
        returns="Recovery",
        summary="Acknowledge an integrity alarm (admin, step-up): sign the head as a recovery checkpoint",
    ),
    Op(
        "audit",
        "log",
        (
            K("user"),
            K("client"),
            K("action"),
            K("outcome"),
            K("since", "since"),
            K("until", "since"),
            K("limit", "int", 100, (0, 10**9)),
            K("after_seq", "int", None, (0, 2**62)),
            K("before", "int", None, (1, 2**63 - 1)),
        ),
        returns="AuditEvent[]",
        summary="Audit events matching the filters (the newest N, or with after_seq the next N, or"
        " with before the newest N below it: paging)",
    ),
    Op(
        "audit",
        "export_lines",
        (
            P("format"),
            K("details", "bool", True),
            K("after_seq", "int", None, (0, 2**63 - 1)),
            K("since", "since"),
        ),
        facade="export",
        transport="lines",
        client_side=("export", "lines_to_file"),
        returns="ExportLines",
        summary="The log as lines (jsonl: whole; csv, cef: after a seq or since a time); the CLI writes them",
    ),
    Op(
        "audit",
        "verify",
        (K("all_signatures", "bool", False),),
        result="verify",
        local_only=PROGRESS,
        returns="VerifyResult",
        summary="Verify the hash chain and signed checkpoints",
    ),
    Op(
        "audit",
        "report",
        (K("since", "since"), K("until", "since"), K("full", "bool", False)),
        returns="Report",
        summary="Access report",
    ),
    Op(
        "audit",
        "prune",
        (P("before", "since"),),
        returns="Prune",
        summary="Delete old entries up to a checkpoint",
    ),
    # --- sync (the service host's OneDrive replica) ----------------------------------------------
    Op("sync", "status", returns="SyncStatus", summary="Remote and outbox state"),
    Op(
        "sync",
        "push",
        (WORKERS, K("force", "bool", False)),
        local_only=PROGRESS,
        returns="Push",
        summary="Drain the outbox",
    ),
    Op(
        "sync",
        "pull",
        (WORKERS,),
        local_only=PROGRESS,
        returns="Pull",
        summary="Restore missing or corrupt local blobs",
    ),
    Op(
        "sync",
        "verify",
        (),
        local_only=PROGRESS,
        returns="SyncVerify",
        summary="Compare remote hashes with local",
    ),
    # configure / remove_config are deliberately not served: the replica's credential paths and
    # endpoints are set on the service host only (`cvault remote set` there), so no API caller can
    # point the OneDrive client at a file of the host (docs/service.md, docs/security.md)
    Op(
        "sync",
        "show_config",
        (),
        returns="RemoteConfig",
        summary="The OneDrive configuration (no secrets), or null",
    ),
)

BY_NAME: dict[str, Op] = {op.name: op for op in OPERATIONS}
SERVICES: tuple[str, ...] = tuple(dict.fromkeys(op.service for op in OPERATIONS))


def param(operation: str, name: str) -> Param:
    """One parameter of an operation, e.g. ``param("clients.add", "grace_days").bounds``."""
    for p in BY_NAME[operation].params:
        if p.name == name:
            return p
    raise KeyError(f"{operation} has no parameter {name}")


#: Error codes the API adds to the facade's own (``vault.errors``); docs/service.md has the table.
API_ERRORS = {
    # code: (HTTP status, CLI exit code)
    "invalid_request": (422, 2),
    "malformed_request": (400, 2),
    "request_too_large": (413, 2),
    "unknown_endpoint": (404, 2),
    "method_not_allowed": (405, 2),
    "rate_limited": (429, 8),
    "internal_error": (500, 1),
}


def status_for(code: str, exit_code: int) -> int:
    """HTTP status of a facade error: by its code where one is special, else by its exit code."""
    special = {
        "locked": 423,
        "stepup_required": 401,
        "blob_not_found": 404,
        "busy": 503,
        "password_check_unavailable": 503,
        "replayed": 409,
    }
    if code in special:
        return special[code]
    if code in API_ERRORS:
        return API_ERRORS[code][0]
    # 6, an integrity failure, is 409 and never a 500 (issue 12): the stored state conflicts with
    # its authentication, a condition no retry clears and no generic 5xx handler should swallow
    return {2: 400, 3: 401, 4: 403, 5: 404, 6: 409, 7: 409, 8: 503, 9: 502}.get(exit_code, 500)
