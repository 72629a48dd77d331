"""Shared state of one open vault, and the authorize-then-audit pipeline every operation uses.

Each domain service (``vault/<domain>/service.py``) receives one :class:`VaultContext`. The rule
of docs/spec.md §2 is kept here, in :meth:`VaultContext.authorize`: gather the facts, let
:mod:`vault.policy` decide, write the decision to the audit log (refusing if that fails), and only
then let the caller act.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from vault import policy
from vault.audit.log import AuditLog
from vault.backends.base import BulkBackend
from vault.clock import Clock
from vault.errors import (
    AccessDenied,
    AuditAlarm,
    ClientUnavailable,
    IntegrityFailure,
    NotFound,
    StepUpRequired,
    UpgradeRequired,
    VaultSealed,
)
from vault.home import VaultHome
from vault.identity import facts
from vault.keys import ClientKeys, Keyring
from vault.policy import Action, AuditEvent, Decision
from vault.principal import Principal
from vault.settings import decode_stored as decode_settings
from vault.store import clients as client_store
from vault.store import rowmac
from vault.store.clients import ClientRow
from vault.store.db import Database

if TYPE_CHECKING:
    from vault.custody.cache import BoundedCache
    from vault.custody.service import CustodyManager

T = TypeVar("T")

DEFAULT_SETTINGS = {
    "keep_versions": 10,  # docs/spec.md §4: record versions kept
    "stepup_window_seconds": 900,  # docs/spec.md §5: TOTP freshness for reading a secret
    "session_absolute_seconds": 8 * 3600,  # docs/spec.md §5: a session lives at most 8 h
    "session_idle_seconds": 30 * 60,  # docs/spec.md §5: ... and ends after 30 min without use
    "default_grace_days": 30,  # docs/spec.md §7
    # issue 11: no client's grace period below this (client add, sla renew, sla expire); a change
    # is two-person (sla min-grace + sla approve-min-grace)
    "min_grace_days": 30,
    "audit_min_retention_days": 365,  # audit prune never deletes entries younger than this
    # the vault's name (init --name): the TOTP issuer people see in their authenticator app and
    # the CEF dvchost; None: "cvault-" and the first 8 hex digits of the vault id
    "vault_name": None,
    # the issuer of new TOTP secrets (init --totp-issuer); None: the vault's name
    "totp_issuer": None,
    # the time zone in which a date without a time (--sla-end 2027-03-31) means the end of that
    # day (init --time-zone; docs/cli.md "Dates"); an IANA name
    "time_zone": "UTC",
}


class VaultContext:
    def __init__(
        self,
        home: VaultHome,
        db: Database,
        clock: Clock,
        keyring: Keyring,
        blobs: BulkBackend,
        settings: dict,
    ):
        self.home = home
        self.db = db
        db.conn.keyring = keyring  # the row MACs (vault.store.rowmac) use the vault's keys
        self.clock = clock
        self.keyring = keyring
        self.blobs = blobs
        self.settings = settings
        self.audit = AuditLog(db, clock, keyring.vault_id, keyring=keyring, blobs=blobs)
        self._client_keys: dict[tuple[str, int], ClientKeys] = {}
        #: service mode: a shared, time-bounded cache replaces the per-command dict above
        self.client_key_cache: BoundedCache | None = None
        self._custody: CustodyManager | None = None
        #: inside one_request(): the account rows users.resume read, for the first decision
        self._one_request = False
        self._lent: facts.AccountSnapshot | None = None
        #: files of this host that hold the vault's own secrets beyond the environment's (the key
        #: file it was unsealed with, the service's TLS key): never read as a credential
        self.own_secret_files: set[str] = set()

    @property
    def custody(self) -> CustodyManager:
        """The custody of this vault's client keys (set by the facade when it opens the vault)."""
        if self._custody is None:
            raise VaultSealed("vault sealed: the custody of the client keys is not set up")
        return self._custody

    @custody.setter
    def custody(self, manager: CustodyManager) -> None:
        self._custody = manager

    @property
    def vault_id(self) -> bytes:
        return self.keyring.vault_id

    def credential_rules(self):
        """The files a configured credential (the replica's, a Key Vault custodian's) must never
        be read from (review4 R4-4, checked where the file is read): the key and passphrase files
        (the environment's and the one this process unsealed with), every local custody file (the
        rows' and the one in use), the service's TLS key and anything in the vault folder."""
        from vault.backends.graph_auth import CredentialFileRules

        files = set(self.own_secret_files)
        for name in ("CVAULT_KEY_FILE", "CVAULT_PASSPHRASE_FILE"):
            files.add(os.environ.get(name, ""))
        if self._custody is not None:
            key_files = [os.environ.get("CVAULT_KEY_FILE", ""), *self.own_secret_files]
            files.update(self._custody.secret_files(key_files))
        return CredentialFileRules(files, (self.home.root_dir,))

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def vault_name(self) -> str:
        return str(self.settings.get("vault_name") or f"cvault-{self.vault_id.hex()[:8]}")

    @property
    def totp_issuer(self) -> str:
        return str(self.settings.get("totp_issuer") or self.vault_name)

    @property
    def time_zone(self) -> str:
        return str(self.settings.get("time_zone") or "UTC")

    @property
    def zone(self):
        """The vault's time zone (``tzinfo``): where a bare end date ends (vault.dates.as_when)."""
        from vault.settings import zone

        return zone(self.time_zone)

    @staticmethod
    def save_settings(conn, changes: dict) -> None:
        """Merge ``changes`` into the stored settings (inside the caller's write transaction; the
        stored row's MAC is checked first, and the new row MACed: vault.store.rowmac)."""
        stored = decode_settings(rowmac.meta_value(conn, "settings"))
        stored.update(changes)
        rowmac.put_meta(conn, "settings", json.dumps(stored, sort_keys=True))

    def ensure_row_macs(
        self, actor: str = "system:upgrade", *, upgrade: bool = False, expected_digest: str | None = None
    ) -> None:
        """At every unseal (and at init): the vault's rows carry MACs (issue 12), and the settings
        in force are the authentic ones.

        Older state is never authenticated automatically (independent review R1): whether a vault
        is "from before" row MACs or a coverage level can only be read from rows a file writer
        can delete or put back, so an automatic backfill at unseal would MAC whatever he planted.
        Without ``upgrade`` a vault with rows still to MAC stays sealed (:class:`UpgradeRequired`,
        exit 8) until an operator checks it and runs ``cvault upgrade`` (:meth:`upgrade_format`);
        ``init`` passes ``upgrade`` for its empty vault. With ``upgrade``: every row of every
        table of ``rowmac.TABLES`` is MACed in one transaction, sessions from before are ended,
        and an ``integrity.row_macs`` audit event says so, unless the vault shows it had MACs (a
        MAC left on a row, the audit event, an audit key sealed under the mark's context, or no
        audit key at all beside audit events): then it is an integrity failure, never a
        backfill. ``expected_digest``: the :func:`rowmac.upgrade_digest` of the summary the
        operator checked; the MACs are added only if the rows are still exactly those (review S6)."""
        pending: tuple[str, ...] = ()
        with self.db.read() as conn:
            if rowmac.enabled(conn):
                self.settings = self._verified_settings(conn)
                pending = rowmac.pending_tables(conn)
                if not pending or self.db.read_only:
                    # read-only: the tables still without MACs fail closed when read
                    return
                self._refuse_rolled_back_coverage(conn)
        if pending:
            if not upgrade:
                raise UpgradeRequired(
                    f"vault sealed: the {', '.join(pending)} rows of this vault carry no MACs yet"
                    " (written by an older cvault, or their MACs were removed); an operator checks"
                    " the vault and runs 'cvault upgrade' (docs/format.md, \"Upgrades\")"
                )
            self._upgrade_row_macs(actor, pending, expected_digest)
            return
        if self.db.read_only:
            raise IntegrityFailure(
                "integrity failure: this vault's rows carry no MACs yet; run cvault upgrade once on writable"
                " storage with this cvault"
            )
        with self.db.read() as conn:
            self._refuse_stripped_row_macs(conn)
        if not upgrade:
            raise UpgradeRequired(
                "vault sealed: this vault's rows carry no MACs (written by a cvault from before row"
                " MACs, or their MACs were removed); an operator checks the vault and runs"
                " 'cvault upgrade' (docs/format.md, \"Upgrades\")"
            )
        counts = None
        with self.db.write() as conn:
            if not rowmac.enabled(conn):
                self._refuse_stripped_row_macs(conn)
                self._refuse_unchecked_rows(conn, expected_digest)
                counts = rowmac.backfill(conn, int(self.now().timestamp()))
            self.settings = self._verified_settings(conn)
        if counts is not None:
            ended = counts.pop("sessions_ended")
            self.audit.append(
                actor=actor,
                action=AuditEvent.INTEGRITY_ROW_MACS.value,
                outcome="ok",
                reason=f"row MACs added to {sum(counts.values())} rows; {ended} session(s) from before ended",
                origin="cli",
            )

    def _refuse_stripped_row_macs(self, conn) -> None:
        """A vault without the row-MAC marker that shows it had row MACs: an integrity failure,
        never a backfill (which would MAC whatever was written meanwhile)."""
        earlier = conn.execute(
            "SELECT seq FROM audit_events WHERE action = ? ORDER BY seq LIMIT 1",
            (AuditEvent.INTEGRITY_ROW_MACS.value,),
        ).fetchone()
        if earlier is not None:
            raise rowmac.RowTampered(
                "integrity failure: this vault's row MACs were removed (they were added at"
                f" audit event {earlier[0]}); run cvault doctor"
            )
        # the audit event and the marker are plain rows a file writer can rename and delete
        # (independent review F1); what it cannot forge: the audit key sealed under the
        # high-water-mark context (vault.audit.signing: a vault gets its mark only after its rows
        # got MACs) and, defence in depth, MACs left on any row; a missing audit key beside audit
        # events is a deleted one (review R1), not a new vault
        from vault.audit.signing import AuditSigner

        marked = AuditSigner(self.db, self.keyring).marked(conn)
        has_mark = conn.execute("SELECT 1 FROM meta WHERE key = 'audit_mark'").fetchone() is not None
        if marked or has_mark or rowmac.any_mac(conn):
            raise rowmac.RowTampered(
                "integrity failure: this vault's row MACs were removed (its audit mark, sealed audit"
                " key or a MAC left on a row shows they were added); run cvault doctor"
            )
        if marked is None and self.audit.has_history(conn):
            raise rowmac.RowTampered(
                "integrity failure: this vault's audit key is missing from vault.db; run cvault doctor"
            )

    @staticmethod
    def _refuse_unchecked_rows(conn, expected_digest: str | None) -> None:
        """Inside the upgrade's write transaction: the rows about to be MACed are exactly the ones
        the operator's summary showed (review S6: rows planted between the summary and ``--yes``,
        or while the prompt waited, were authenticated). ``None``: the library caller (``init``,
        tests) authenticates what is there, in this one transaction."""
        if expected_digest is None:
            return
        import hmac

        now = rowmac.upgrade_digest(conn)
        if not hmac.compare_digest(now.encode("ascii"), expected_digest.encode("utf-8", "replace")):
            raise IntegrityFailure(
                "integrity failure: the rows to authenticate changed since the summary you checked"
                " (its digest no longer matches); nothing upgraded: run cvault upgrade again and check"
                " the new summary"
            )

    def _refuse_rolled_back_coverage(self, conn) -> None:
        """A marker below a coverage the vault records as reached was put back from an older
        copy (review S2): its tables' MACs were stripped to have planted rows MACed by an upgrade.
        The record that cannot be pruned or deleted without an alarm is the sealed audit mark's
        coverage (review4 R4-1: ``audit prune`` deletes old events): every mark written since
        the marker said N carries N. Defence in depth, and for a vault whose mark predates that
        fact: every coverage upgrade names its coverage in its ``integrity.row_macs`` event (a
        vault that got its first MACs at a coverage never had an authentic marker below it);
        ``cvault upgrade`` verifies the log and the mark before it gets here."""
        import re

        have = rowmac.coverage(conn)
        mark = self.audit.marks.read(conn)
        if mark is not None and mark.coverage > have:
            raise rowmac.RowTampered(
                f"integrity failure: this vault's row-MAC marker says coverage {have}, but its audit"
                f" log records coverage {mark.coverage} in its high-water mark (an older copy of the"
                " marker was put back); nothing upgraded: run cvault doctor"
            )
        for (reason,) in conn.execute(
            "SELECT reason FROM audit_events WHERE action = ? AND outcome = 'ok'",
            (AuditEvent.INTEGRITY_ROW_MACS.value,),
        ):
            reached = re.search(r"\(coverage (\d+)\)", reason or "")
            if reached and int(reached.group(1)) > have:
                raise rowmac.RowTampered(
                    f"integrity failure: this vault's row-MAC marker says coverage {have}, but its audit"
                    f" log records coverage {int(reached.group(1))} (an older copy of the marker was put"
                    " back); nothing upgraded: run cvault doctor"
                )

    def upgrade_summary(self) -> dict:
        """What ``cvault upgrade`` would authenticate (readable sealed): per MACed table the rows
        that carry no MAC yet, the roles those users hold, and the audit log's size."""
        with self.db.read() as conn:
            meta_keys = ",".join("?" * len(rowmac.META_KEYS))
            unmaced = {
                table: conn.execute(
                    f"SELECT count(*) FROM {table} WHERE mac IS NULL"  # noqa: S608 - constants of TABLES
                    + (f" AND key IN ({meta_keys})" if table == "meta" else ""),
                    rowmac.META_KEYS if table == "meta" else (),
                ).fetchone()[0]
                for table in rowmac.TABLES
            }
            policy = self._upgrade_policy(conn)
            custody = self._upgrade_custody(conn)
            roles = dict(
                conn.execute("SELECT role, count(*) FROM user_roles GROUP BY role ORDER BY role").fetchall()
            )
            holders: dict[str, list[str]] = {}
            for role, name in conn.execute(
                "SELECT r.role, u.name FROM user_roles r JOIN users u ON u.id = r.user_id"
                " ORDER BY r.role, u.name"
            ):
                holders.setdefault(role, []).append(name)
            events = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
            checkpoints = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]
            digest = rowmac.upgrade_digest(conn)
            # the values of the meta rows an upgrade would MAC that say where a credential goes
            # (review4 R4-4): shown, not counted
            replica = conn.execute(
                "SELECT value FROM meta WHERE key = 'remote.onedrive' AND mac IS NULL"
            ).fetchone()
        return {
            "rows_without_mac": {t: n for t, n in unmaced.items() if n},
            "replica_config": None if replica is None else str(replica[0]),
            "roles": roles,
            "role_holders": holders,
            "digest": digest,
            "audit_entries": events,
            "audit_checkpoints": checkpoints,
            "policy": policy,
            "custody": custody,
        }

    @staticmethod
    def _upgrade_policy(conn) -> dict:
        """The values of the MACed meta rows, as stored (review4 R4-2: the digest binds them, so the
        summary shows them): single-operator mode (and whether the vault's init recorded it), the
        two-admins fact, and every setting that differs from its default."""
        stored = dict(
            conn.execute(
                f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(rowmac.META_KEYS))})",  # noqa: S608 - placeholders only
                rowmac.META_KEYS,
            ).fetchall()
        )
        single = stored.get("single_operator") is not None
        recorded = (
            conn.execute(
                "SELECT 1 FROM audit_events WHERE action = 'user.add' AND reason LIKE 'single operator %'"
                " LIMIT 1"
            ).fetchone()
            is not None
        )
        settings: dict[str, Any] = {}
        raw = stored.get("settings")
        if raw is not None:
            try:
                parsed = json.loads(raw)
            except (TypeError, ValueError):
                parsed = None
            if not isinstance(parsed, dict):
                settings["(unreadable)"] = str(raw)[:200]
            else:
                settings = {k: v for k, v in sorted(parsed.items()) if DEFAULT_SETTINGS.get(k, object()) != v}
        return {
            "single_operator": single,
            "single_operator_recorded_at_init": single and recorded,
            "two_admins": stored.get("two_admins") is not None,
            "settings_changed": settings,
        }

    @staticmethod
    def _upgrade_custody(conn) -> dict:
        """The custody rows as stored (review4 R4-2): each custodian's kind and configuration, each
        client's custody versions with their states, and each pending custody job."""
        custodians = [
            {"id": cid, "kind": kind, "config": config, "retired": retired is not None}
            for cid, kind, config, retired in conn.execute(
                "SELECT id, kind, config, retired_at FROM custodians ORDER BY id"
            )
        ]
        versions = [
            {"client_id": client, "version": version, "custodian_id": custodian, "state": state}
            for client, version, custodian, state in conn.execute(
                "SELECT client_id, version, custodian_id, state FROM client_custody"
                " ORDER BY client_id, version"
            )
        ]
        jobs = [
            {"client_id": client, "reason": reason, "from_version": a, "to_version": b, "step": step}
            for client, reason, a, b, step in conn.execute(
                "SELECT client_id, reason, from_version, to_version, step FROM custody_jobs"
                " ORDER BY client_id"
            )
        ]
        return {"custodians": custodians, "versions": versions, "jobs": jobs}

    def upgrade_format(self, actor: str = "system:upgrade", expected_digest: str | None = None) -> list[str]:
        """``cvault upgrade`` (unsealed, by whoever holds the unseal secret): authenticate the
        state an older cvault left, once, after the operator checked it (docs/format.md,
        "Upgrades"). Refused (integrity failure) when the audit log does not verify against its
        signed checkpoints: nothing is authenticated over a log that was edited. Returns what was
        done, in words (empty: nothing to do)."""
        from vault.audit.live import verify_live
        from vault.audit.signing import AuditSigner

        with self.db.read() as conn:
            has_history = self.audit.has_history(conn)
            marked = AuditSigner(self.db, self.keyring).marked(conn)
        if marked is None and has_history:
            raise IntegrityFailure("integrity failure: this vault's audit key is missing from vault.db")
        signed_up_to = 0  # the last entry a signed checkpoint (a row or a copy) proves
        # the head before the verification reads its snapshot: an entry appended after this makes
        # the first mark refuse (vault.audit.log.AuditLog._unproven_before_mark)
        head = self.audit.head()
        if has_history:
            # before the first mark signs the head (review S4): every checkpoint's signature, the
            # chain from its start to the head, every blob-store copy and the replica's newest
            # copy; the log must extend the newest signed checkpoint found anywhere
            checked = verify_live(self, None, all_signatures=True, complete=True)
            if not checked.ok:
                if checked.bad_seq is None:
                    raise IntegrityFailure(
                        f"integrity failure: the audit log does not verify ({checked.problem}); nothing"
                        ' upgraded (docs/format.md, "Upgrades")'
                    )
                raise AuditAlarm(
                    f"integrity alarm: the audit log does not verify: {checked.problem}; first bad entry"
                    f" {checked.bad_seq}; nothing upgraded, the vault stays on its old format (restore"
                    ' it from a backup taken before the edit: docs/format.md, "Upgrades")',
                    checked.bad_seq,
                )
            signed_up_to = checked.signed_up_to or 0
        if marked is False:
            self._refuse_put_back_audit_key()
        count_sql = "SELECT count(*) FROM audit_events WHERE action = ?"
        before = self.db.all(count_sql, (AuditEvent.INTEGRITY_ROW_MACS.value,))
        done: list[str] = []
        if marked is False:
            self.audit.first_mark_over = (*head, signed_up_to)
        try:
            self.ensure_row_macs(actor, upgrade=True, expected_digest=expected_digest)
            if self.db.all(count_sql, (AuditEvent.INTEGRITY_ROW_MACS.value,)) != before:
                done.append("row MACs added")
            if marked is False:
                with self.db.read() as conn:
                    still_legacy = AuditSigner(self.db, self.keyring).marked(conn) is False
                if still_legacy:  # no append above: the mark is written by this one
                    self.audit.append(
                        actor=actor,
                        action=AuditEvent.INTEGRITY_ROW_MACS.value,
                        outcome="ok",
                        reason="upgrade: the audit key is re-sealed for the high-water mark; no row changed",
                        origin="cli",
                    )
                done.append("audit high-water mark written")
        finally:
            self.audit.first_mark_over = None
        return done

    def _refuse_put_back_audit_key(self) -> None:
        """An audit key sealed as before the mark beside a checkpoint that signs ``prev`` (a row
        or a blob-store copy): only a vault with a mark writes those (the key is re-sealed in the
        transaction of the first one), so the key row was put back from an older copy (review
        R5) and the first mark would sign whatever log is there now."""
        from vault.audit.live import backend_checkpoints

        for cp in (*self.audit.checkpoints(), *backend_checkpoints(self)):
            if cp.prev is not None:
                raise IntegrityFailure(
                    f"integrity failure: this vault's audit key is sealed as before the audit high-water"
                    f" mark, but checkpoint {cp.seq} was signed by a cvault with the mark (an older copy of"
                    " the key row was put back); nothing upgraded: run cvault doctor"
                )

    def _upgrade_row_macs(
        self, actor: str, tables: tuple[str, ...], expected_digest: str | None = None
    ) -> None:
        """A vault whose rows got MACs before ``tables`` joined (rowmac.COVERAGE) gets theirs now,
        once, audited like the first backfill (docs/format.md "Row MACs", "Coverage")."""
        from vault.store import integrations

        def verify_row(table: str, row: tuple) -> None:
            if table == "integrations":
                integrations.verify_row(self.keyring, row[1:])

        with self.db.write() as conn:
            if not rowmac.pending_tables(conn):
                return  # another process upgraded meanwhile
            self._refuse_rolled_back_coverage(conn)
            self._refuse_unchecked_rows(conn, expected_digest)
            counts = rowmac.upgrade(conn, verify_row)
            if "custody_jobs" in tables:
                # the rows just MACed: a rotation whose step its custody versions contradict (a
                # row put back from an older copy) is refused, nothing MACed (rolled back)
                from vault.custody.rows import check_step, load_jobs

                for job in load_jobs(conn):
                    check_step(conn, job, job.client_id)
        self.audit.append(
            actor=actor,
            action=AuditEvent.INTEGRITY_ROW_MACS.value,
            outcome="ok",
            reason=(
                f"row MACs added to {sum(counts.values())} rows of {', '.join(tables)}"
                f" (coverage {rowmac.COVERAGE})"
            ),
            origin="cli",
        )

    @staticmethod
    def _verified_settings(conn) -> dict:
        return {**DEFAULT_SETTINGS, **decode_settings(rowmac.meta_value(conn, "settings"))}

    def integrity_alarm(self, principal: Principal | None, exc: IntegrityFailure, action: str) -> None:
        """Audit a row that failed its MAC while deciding or serving ``action`` (the message names
        the table and the row id, never a value). Best effort: the refusal stands either way."""
        with contextlib.suppress(Exception):  # the integrity failure is what the caller reports
            self.audit.append(
                actor=principal.name if principal is not None else "system",
                action=AuditEvent.INTEGRITY_ROW_FAILURE.value,
                outcome="error",
                reason=f"{action}: {exc.message}"[:500],
                origin=principal.origin if principal is not None else "cli",
            )

    @staticmethod
    def load_settings(db: Database) -> dict:
        row = db.one("SELECT value FROM meta WHERE key = 'settings'")
        return {**DEFAULT_SETTINGS, **decode_settings(None if row is None else row[0])}

    def min_grace_days(self, conn=None) -> int:
        """The vault-wide minimum grace period, read from the database each time (it changes by
        a two-person approval in another process or another pooled connection: never cached)."""
        # its MAC checked (issue 12)
        stored = decode_settings(rowmac.meta_value(conn or self.db.conn, "settings"))
        return int(stored.get("min_grace_days", DEFAULT_SETTINGS["min_grace_days"]) or 0)

    # --- clients and their keys ---------------------------------------------------------------

    def client(self, name: str, conn=None) -> ClientRow:
        client = client_store.by_name(conn or self.db.conn, name)
        if client is None:
            raise NotFound(f"no client named {name!r}")
        return client

    def client_by_id(self, client_id: str, conn=None) -> ClientRow:
        client = client_store.by_id(conn or self.db.conn, client_id)
        if client is None:
            raise NotFound(f"no client with id {client_id}")
        return client

    def read_client(self, name: str, body: Callable[[Any, ClientRow, ClientKeys], T]) -> T:
        """``body(conn, client, keys)`` in one read snapshot holding the client's row and its current
        key version together (retried if a rotation overtook the snapshot: ``Database.read_retrying``).

        The rule every reader follows (docs/architecture.md, "Key versions under concurrency"): the
        key version comes from a client row read in the same snapshot (or write transaction) as the
        records it opens, never from a row read before it."""

        def run(conn, touch):
            client = self.client(name, conn)
            touch(client.id)
            return body(conn, client, self.client_keys(client, conn=conn))

        return self.db.read_retrying(run)

    def client_keys(self, client: ClientRow, version: int | None = None, conn=None) -> ClientKeys:
        """The client's keys of ``version`` (default: the version ``client`` names). ``client`` and
        ``conn`` must come from the same snapshot as whatever the keys will open or write."""
        if client.shred_state:
            # from the first shred step on, no one unwraps this client's key (docs/spec.md §7; docs/sla.md)
            raise ClientUnavailable(f"client {client.name} is {client.shred_state}: its keys are destroyed")
        version = client.key_version if version is None else version
        shared = self.client_key_cache
        cache_key = (client.id, version)
        cached = shared.get(cache_key) if shared is not None else self._client_keys.get(cache_key)
        if cached is not None:
            return cached
        wrapped = client_store.wrapped_key(conn or self.db.conn, client.id, version)
        if wrapped is None:
            raise IntegrityFailure(
                f"integrity failure: key of client {client.name} (version {version}) is missing"
            )
        key = self.keyring.unwrap_client_key(wrapped, client.id, version, client.name, conn=conn)
        keys = ClientKeys(self.keyring, client.id, version, key)
        if shared is not None:
            shared.put((client.id, version), keys)
        else:
            self._client_keys[(client.id, version)] = keys
        return keys

    def forget_client_keys(self, client_id: str) -> None:
        """Drop the client's unwrapped keys and custody secrets held in memory (a shred, a rotation)."""
        for k in [k for k in self._client_keys if k[0] == client_id]:
            del self._client_keys[k]
        if self.client_key_cache is not None:
            self.client_key_cache.forget_client(client_id)
        if self._custody is not None:
            self._custody.forget(client_id)

    # --- authorization ------------------------------------------------------------------------

    @contextlib.contextmanager
    def one_request(self) -> Iterator[None]:
        """One service request: the account rows ``users.resume`` reads (user, session, roles,
        MAC-checked) serve the request's first decision instead of being read again
        (docs/service.md, "One read"). Forgotten when the request ends: never across requests."""
        self._one_request, self._lent = True, None
        try:
            yield
        finally:
            self._one_request, self._lent = False, None

    def lend_account(self, snapshot: facts.AccountSnapshot) -> None:
        """``users.resume``'s rows, kept for the next decision only inside :meth:`one_request`."""
        self._lent = snapshot if self._one_request else None

    def _borrow_account(self, principal: Principal) -> facts.AccountSnapshot | None:
        """The lent rows, once, if they are this principal's session's and nothing was written on
        this connection since they were read (a write may have changed them): else None (read)."""
        lent, self._lent = self._lent, None
        if (
            lent is None
            or lent.session_id != principal.session_id
            or lent.user.name != principal.name
            or lent.user.id != principal.user_id
            or lent.writes != self.db.writes
        ):
            return None
        return lent

    def gather_facts(
        self, principal: Principal, client: ClientRow | None, now: datetime
    ) -> tuple[policy.AccountFacts | None, policy.ClientFacts | None]:
        """Read the facts the policy needs, fresh, for this one decision (one read snapshot):
        account state, roles, training, session (absolute + idle), step-up time, assignment.
        Inside :meth:`one_request` the user, session and roles rows are the ones ``users.resume``
        read for this request moments before (:meth:`_borrow_account`)."""
        lent = self._borrow_account(principal) if self._lent is not None else None
        if principal.kind != "user":
            client_facts = None
            if client is not None:
                client_facts = policy.ClientFacts(name=client.name, state=client.state(now))
            return None, client_facts
        with self.db.read() as conn:
            account, user_id, touch = facts.account_facts(conn, self.settings, principal, now, lent)
            client_facts = None
            if client is not None:
                client_facts = facts.client_facts(conn, client, user_id, now)
        if touch and principal.session_id:
            facts.touch_session(self.db, principal.session_id, now)
        return account, client_facts

    def authorize(
        self,
        principal: Principal,
        action: Action,
        *,
        client: ClientRow | None = None,
        detail: str | None = None,
        subject: str | None = None,
        reaches: tuple[policy.Reach, ...] = (),
    ) -> Decision:
        """Decide, audit the decision (fail closed), and raise if denied. ``subject``: the user
        an administrative action changes (nobody may grant, train or assign themselves);
        ``reaches``: the people a team action gives need-to-know (policy.TEAM_BOUND)."""
        now = self.now()
        try:
            account, client_facts = self.gather_facts(principal, client, now)
            subject_lineage: frozenset[str] = frozenset()
            subject_holders: frozenset[str] = frozenset()
            actor_chain: frozenset[str] = frozenset()
            if subject is not None and action in policy.LINEAGE_BOUND:
                with self.db.read() as conn:
                    subject_user = facts.user_row(conn, subject)
                    subject_lineage = facts.lineage(conn, subject_user.id if subject_user else None)
                    subject_holders = facts.code_holders(conn, subject_user.id if subject_user else None)
            if (subject is not None and action in policy.LINEAGE_BOUND) or action in policy.TEAM_BOUND:
                with self.db.read() as conn:  # review2 S3
                    actor_chain = facts.requester_chain(conn, principal.name)
        except rowmac.RowTampered as exc:
            self.integrity_alarm(principal, exc, action.value)
            raise
        decision = policy.decide(
            principal,
            action,
            now=now,
            account=account,
            client=client_facts,
            stepup_window_seconds=self.settings["stepup_window_seconds"],
            subject=subject,
            subject_lineage=subject_lineage,
            reaches=reaches,
            actor_chain=actor_chain,
            subject_holders=subject_holders,
        )
        sealed, key_ref = self.seal_detail(client, detail)
        self.audit.append(
            actor=principal.name,
            action=action.value,
            outcome="allow" if decision.allowed else "deny",
            client=client.name if client else None,
            reason=decision.reason,
            origin=principal.origin,
            detail_sealed=sealed,
            detail_key=key_ref,
        )
        if not decision.allowed:
            if decision.kind == "client":
                raise ClientUnavailable(f"access refused: {decision.reason}")
            if decision.kind == "stepup":
                raise StepUpRequired(decision.reason)
            raise AccessDenied(f"access denied: {decision.reason}")
        return decision

    def authorize_each(
        self, principal: Principal, action: Action, clients: list[ClientRow]
    ) -> list[ClientRow]:
        """One decision per client (``secret search``): the account's facts read once, each
        client's need-to-know decided and audited, every decision in one audit transaction (fail
        closed: if it cannot be written, nothing is returned). Returns the clients allowed; the
        others are simply absent (a search does not tell which clients exist)."""
        if not clients:
            return []
        now = self.now()
        client_facts: list[policy.ClientFacts | None] = []
        try:
            account, _ = self.gather_facts(principal, None, now)
            if principal.kind == "user":
                with self.db.read() as conn:
                    user = facts.user_row(conn, principal.name)
                    user_id = user.id if user is not None else None
                    client_facts = [facts.client_facts(conn, c, user_id, now) for c in clients]
            else:
                client_facts = [policy.ClientFacts(name=c.name, state=c.state(now)) for c in clients]
        except rowmac.RowTampered as exc:
            self.integrity_alarm(principal, exc, action.value)
            raise
        events, allowed = [], []
        for client, cfacts in zip(clients, client_facts, strict=True):
            decision = policy.decide(
                principal,
                action,
                now=now,
                account=account,
                client=cfacts,
                stepup_window_seconds=self.settings["stepup_window_seconds"],
            )
            events.append(
                {
                    "actor": principal.name,
                    "action": action.value,
                    "outcome": "allow" if decision.allowed else "deny",
                    "client": client.name,
                    "reason": decision.reason,
                    "origin": principal.origin,
                }
            )
            if decision.allowed:
                allowed.append(client)
        self.audit.append_many(events)
        return allowed

    def record_outcomes(
        self, principal: Principal, action: Action, outcomes: list[tuple[ClientRow, str]]
    ) -> None:
        """``ok`` results for several clients, each with its own sealed detail, in one audit
        transaction (a search's matches)."""
        if not outcomes:
            return
        events = []
        for client, detail in outcomes:
            sealed, key_ref = self.seal_detail(client, detail)
            events.append(
                {
                    "actor": principal.name,
                    "action": action.value,
                    "outcome": "ok",
                    "client": client.name,
                    "reason": "search matched",
                    "origin": principal.origin,
                    "detail_sealed": sealed,
                    "detail_key": key_ref,
                }
            )
        self.audit.append_many(events)

    def record_outcome(
        self,
        principal: Principal,
        action: Action | AuditEvent,
        outcome: str,
        *,
        client: ClientRow | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Audit an event that is not an authorization decision (a result, an error)."""
        sealed, key_ref = self.seal_detail(client, detail)
        self.audit.append(
            actor=principal.name,
            action=action.value,
            outcome=outcome,
            client=client.name if client else None,
            reason=reason,
            origin=principal.origin,
            detail_sealed=sealed,
            detail_key=key_ref,
        )

    def seal_detail(self, client: ClientRow | None, detail: str | None) -> tuple[bytes | None, str | None]:
        """Client-revealing audit detail (a record path) sealed under the client's audit-detail
        key (vault.audit.details: it survives key rotation and is destroyed by the shred)."""
        if detail is None or client is None or client.shred_state:
            return None, None
        try:
            return self.audit.details.seal(client.id, client.name, detail, cache=self.client_key_cache)
        except VaultSealed:
            return None, None
