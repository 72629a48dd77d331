"""The one entry point of the library: :class:`Vault` (docs/spec.md §2).

    v = Vault.open(home)                 # sealed; permissions and schema checked
    v.unseal_key_file(path)              # or unseal_passphrase / unseal_recovery_key
    v.secrets.get(principal, "acme", "office/firewall")

The CLI and the HTTP API are thin adapters over this object; neither contains policy or crypto.
Every public operation of a service takes the acting :class:`~vault.principal.Principal` first,
checks policy, writes the audit event, then acts.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from vault import crypto, keys
from vault.audit.signing import AuditSigner
from vault.backends.local import LocalBackend
from vault.clock import Clock, SystemClock, to_epoch
from vault.context import VaultContext
from vault.errors import (
    AuthenticationFailed,
    CryptoError,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    VaultSealed,
)
from vault.home import VaultHome
from vault.keys import Keyring
from vault.store.db import Database
from vault.tuples import NamedTuple

if TYPE_CHECKING:  # the services load on first use (_Service); these are for type checkers
    from pathlib import Path

    from vault.audit.service import AuditService
    from vault.backends.base import Backend
    from vault.backup.service import BackupService
    from vault.clients.access import AccessService
    from vault.clients.service import ClientService
    from vault.clients.teams import TeamService
    from vault.custody.service import CustodyService
    from vault.identity.service import UserService
    from vault.maintenance.service import MaintenanceService
    from vault.records.service import SecretService
    from vault.sla.contracts import ContractService, IntegrationService
    from vault.sla.service import SlaService
    from vault.slots.service import SlotService
    from vault.sync.service import SyncService

FORMAT_VERSION = 1


ServiceT = TypeVar("ServiceT")


def check_format_version(db: Database) -> None:
    """The vault's ``meta.format_version`` must be the one this build writes: a newer or older
    (or unreadable) one is refused with one line (exit 6), never guessed at."""
    from vault.errors import IntegrityFailure

    row = db.one("SELECT value FROM meta WHERE key = 'format_version'")
    value = row[0] if row is not None else None
    if type(value) is not int:
        raise IntegrityFailure("integrity failure: the vault's format version is missing or unreadable")
    if value > FORMAT_VERSION:
        raise IntegrityFailure(
            f"integrity failure: this vault's format version {value} is newer than this cvault reads"
            f" ({FORMAT_VERSION}): upgrade cvault to open it"
        )
    if value < FORMAT_VERSION:
        raise IntegrityFailure(
            f"integrity failure: this vault's format version {value} is older than this cvault reads"
            f" ({FORMAT_VERSION})"
        )


class _Service(Generic[ServiceT]):
    """A facade service, created on first use: ``cvault secret get`` then imports only the
    services it touches (docs/performance.md).

    ``wiring(vault)`` gives the collaborators the service is built with (services reach each other
    only through these, never by importing one another); ``Vault(service_options=...)`` adds
    options per service name (tests inject a ready remote, a recording sleep)."""

    def __init__(self, target: str, wiring: Callable[[Vault], dict[str, Any]] | None = None):
        self.target = target
        self.wiring = wiring

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def service_class(self) -> type[ServiceT]:
        module, cls = self.target.split(":")
        found: type[ServiceT] = getattr(importlib.import_module(module), cls)
        return found

    @overload
    def __get__(self, vault: None, owner: type | None = None) -> _Service[ServiceT]: ...

    @overload
    def __get__(self, vault: Vault, owner: type | None = None) -> ServiceT: ...

    def __get__(self, vault: Vault | None, owner: type | None = None) -> _Service[ServiceT] | ServiceT:
        if vault is None:
            return self
        options = dict(self.wiring(vault)) if self.wiring else {}
        options.update(vault.service_options.get(self.name, {}))
        factory: Callable[..., ServiceT] = self.service_class()
        service = factory(vault.ctx, **options)
        vault.__dict__[self.name] = service  # later reads bypass the descriptor
        return service


class InitResult(NamedTuple):
    vault_id: str
    recovery_key: str  # shown once, never stored
    slots: list[dict]
    #: the first admin's enrollment (otpauth URI, recovery codes): shown once, never stored
    admin: dict | None = None
    #: the audit key's fingerprint (vault.audit.signing.fingerprint): note it where reviewers find it
    audit_fingerprint: str = ""


class Vault:
    slots: _Service[SlotService] = _Service("vault.slots.service:SlotService")
    clients: _Service[ClientService] = _Service("vault.clients.service:ClientService")
    # the collaborators are bound methods, so a service is created only when one is called: a blob
    # lost locally is fetched from the replica, and only then is the sync service created
    secrets: _Service[SecretService] = _Service(
        "vault.records.service:SecretService", lambda v: {"fetch_lost_blob": v._fetch_lost_blob}
    )
    sync: _Service[SyncService] = _Service(
        "vault.sync.service:SyncService", lambda v: {"blob_verifier": v._blob_is_authentic}
    )
    maintenance: _Service[MaintenanceService] = _Service(
        "vault.maintenance.service:MaintenanceService", lambda v: {"records": v.secrets}
    )
    audit: _Service[AuditService] = _Service("vault.audit.service:AuditService")
    users: _Service[UserService] = _Service("vault.identity.service:UserService")
    access: _Service[AccessService] = _Service("vault.clients.access:AccessService")
    teams: _Service[TeamService] = _Service("vault.clients.teams:TeamService")
    sla: _Service[SlaService] = _Service("vault.sla.service:SlaService")
    contracts: _Service[ContractService] = _Service(
        "vault.sla.contracts:ContractService", lambda v: {"sla": v.sla}
    )
    integrations: _Service[IntegrationService] = _Service(
        "vault.sla.contracts:IntegrationService", lambda v: {"contracts": v.contracts}
    )
    custody: _Service[CustodyService] = _Service("vault.custody.service:CustodyService")
    # remote backups go to the replica: the sync service is created only then
    backups: _Service[BackupService] = _Service(
        "vault.backup.service:BackupService", lambda v: {"remote": v._remote}
    )

    def __init__(
        self,
        ctx: VaultContext,
        *,
        service_options: dict[str, dict[str, Any]] | None = None,
        custody_file: Path | str | None = None,
        custody_options: dict[str, Any] | None = None,
    ):
        from vault.custody.service import CustodyManager

        self.ctx = ctx
        self.service_options = service_options or {}
        # custody of the client keys (docs/sla.md section 6): the keyring asks it for S(c, n)
        ctx.custody = CustodyManager(ctx, custody_file=custody_file, **dict(custody_options or {}))
        ctx.keyring.custody_resolver = ctx.custody.resolve
        # checkpoint copies reach the replica (docs/audit.md section 3); verify compares with it
        ctx.audit.remote = self._replica

    def _replica(self) -> Backend | None:
        """The replica if one is configured (or injected), else None; no sync service is created
        for a vault without one."""
        from vault.sync.service import remote_configured

        injected = "sync" in self.__dict__ or self.service_options.get("sync", {}).get("remote")
        if not injected and not remote_configured(self.ctx):
            return None
        return self.sync.remote()

    def _fetch_lost_blob(self, name: str) -> bytes | None:
        return self.sync.fetch_lost_blob(name)

    def _blob_is_authentic(self, name: str, data: bytes) -> bool | None:
        return self.secrets.blob_is_authentic(name, data)

    def _remote(self) -> Backend | None:
        return self.sync.remote()

    @classmethod
    def services(cls) -> dict[str, _Service[Any]]:
        """The facade's services by attribute name (the registry test reads their classes)."""
        return {name: value for name, value in vars(cls).items() if isinstance(value, _Service)}

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        home: Path | str,
        *,
        passphrase: str | None = None,
        key_file: Path | str | None = None,
        clock: Clock | None = None,
        kdf_params: dict | None = None,
        admin: str | None = None,
        admin_password: str | None = None,
        custody_file: Path | str | None = None,
        custody_options=None,
        settings: dict | None = None,
        single_operator: bool = False,
    ) -> tuple[Vault, InitResult]:
        """Create a vault with a recovery slot and a passphrase and/or key-file slot, and its
        local custody file (``custody_file``; by default next to the key file, or in the user
        config folder; ``CVAULT_CUSTODY_FILE`` overrides the default).

        With ``admin``, the first admin is created and enrolled at once (password
        ``admin_password``); the result carries its otpauth URI and recovery codes.

        ``single_operator``: a one-person shop. The two-person rules are off (docs/identity.md,
        "Single-operator mode"): the admin gets every role and may vouch for themselves; doctor,
        the audit report and every shred certificate say so. It cannot be turned off later."""
        if single_operator and admin is None:
            raise InvalidInput("--single-operator needs --admin NAME (the one operator)")
        if not passphrase and not key_file:
            raise InvalidInput("init needs a passphrase or a key file")
        if admin is not None:
            from vault.identity.factors import check_password_rules
            from vault.names import user_name

            user_name(admin)
            check_password_rules(admin_password)  # before anything is created
        from pathlib import Path

        if key_file is not None and Path(key_file).exists():
            raise InvalidInput(f"key file {key_file} already exists; refusing to overwrite it")
        vhome = VaultHome(home)
        vhome.create()
        clock = clock or SystemClock()
        db = Database(vhome.db_path, create=True)
        db.migrate()
        vault_id = crypto.random_bytes(16)
        root = crypto.new_key()
        now = to_epoch(clock.now())
        with db.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('vault_id', ?)", (vault_id,))
            conn.execute("INSERT INTO meta (key, value) VALUES ('format_version', ?)", (FORMAT_VERSION,))
            conn.execute("INSERT INTO meta (key, value) VALUES ('created_at', ?)", (now,))
            if settings:  # the vault's name, TOTP issuer, time zone (vault.settings.check_settings)
                from vault.settings import check_settings

                # written before the keys exist: ensure_row_macs below MACs it with the other rows
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('settings', ?)",
                    (json.dumps(check_settings(**settings), sort_keys=True),),
                )
            if single_operator:
                conn.execute("INSERT INTO meta (key, value) VALUES ('single_operator', '1')")
        keyring = Keyring(vault_id)
        keyring.load_root(root)
        ctx = VaultContext(
            vhome, db, clock, keyring, LocalBackend(vhome.blobs), VaultContext.load_settings(db)
        )
        from vault.custody.service import default_custody_file

        custody_path = Path(custody_file) if custody_file else default_custody_file(vault_id, key_file)
        vault = cls(ctx, custody_file=custody_path, custody_options=custody_options)
        ctx.audit.initializing = True  # until audit.start(): appends before the audit key exists
        ctx.ensure_row_macs("system:init", upgrade=True)  # every row from here on carries its MAC
        with db.write() as conn:
            ctx.custody.init_local(custody_path, conn)
        recovery_secret, recovery_text = keys.new_recovery_key()
        vault.slots.add_slot("recovery", recovery_secret, label="recovery key")
        if passphrase:
            vault.slots.add_slot(
                "passphrase", passphrase.encode("utf-8"), label="passphrase", kdf_params=kdf_params
            )
        if key_file is not None:
            vault.slots.create_key_file_slot(Path(key_file))
        public = AuditSigner(db, keyring).ensure()
        ctx.audit.start()  # the signed empty log and the first high-water mark
        ctx.audit.initializing = False
        enrolled = None
        if admin is not None and admin_password is not None:  # the rules were checked above
            enrolled = vault.users.bootstrap_admin(admin, admin_password, single_operator=single_operator)
        from vault.audit.signing import fingerprint

        return vault, InitResult(
            vault_id.hex(), recovery_text, vault.slots.list_slots(), enrolled, fingerprint(public)
        )

    @classmethod
    def open(
        cls,
        home: Path | str,
        *,
        clock: Clock | None = None,
        write_lock: threading.RLock | None = None,
        service_options: dict[str, dict[str, Any]] | None = None,
        custody_file: Path | str | None = None,
        custody_options=None,
    ) -> Vault:
        """Open (sealed). Refuses a missing vault and one whose files others can read.

        ``custody_file`` (or ``CVAULT_CUSTODY_FILE``) says where the local custody file is when it
        is not where the vault recorded it (a restored or moved vault)."""
        vhome = VaultHome(home)
        vhome.require()
        vhome.check_permissions()
        db = Database(vhome.db_file, write_lock=write_lock)
        db.migrate()
        row = db.one("SELECT value FROM meta WHERE key = 'vault_id'")
        if row is None:
            raise NotFound(f"{vhome.root_dir} is not an initialised cvault vault")
        check_format_version(db)
        if not isinstance(row[0], bytes) or len(row[0]) != 16:
            # the vault id binds every key and AAD: anything but the 16 bytes init wrote is an
            # edited file (a write-capable attacker, A4), one line and exit 6, never a traceback
            db.close()
            raise IntegrityFailure("integrity failure: meta.vault_id is not a vault id; run cvault doctor")
        keyring = Keyring(bytes(row[0]))
        ctx = VaultContext(
            vhome,
            db,
            clock or SystemClock(),
            keyring,
            LocalBackend(vhome.blobs_dir),
            VaultContext.load_settings(db),
        )
        return cls(
            ctx, service_options=service_options, custody_file=custody_file, custody_options=custody_options
        )

    @classmethod
    def restore(
        cls,
        file: Path | str,
        home: Path | str,
        *,
        unseal: tuple[str, bytes],
        custody_file: Path | str | None = None,
        custody_options=None,
        clock: Clock | None = None,
    ) -> dict:
        """Restore a ``cvault backup`` file into a new vault folder (docs/sla.md section 6)."""
        from vault.backup.service import restore

        return restore(
            file,
            home,
            unseal=unseal,
            open_vault=cls.open,
            custody_file=custody_file,
            custody_options=custody_options,
            clock=clock,
        )

    def close(self) -> None:
        self.ctx.keyring.seal()
        if self.ctx.custody is not None:
            self.ctx.custody.close()
        self.ctx.db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- unsealing --------------------------------------------------------------------------------

    @property
    def session_scope(self) -> str:
        """What a session file is bound to: this vault's id (hex)."""
        return self.ctx.vault_id.hex()

    @property
    def unsealed(self) -> bool:
        return self.ctx.keyring.unsealed

    def _unseal(
        self,
        kind: str,
        secret: bytes,
        what: str,
        key_file: Path | str | None = None,
        *,
        upgrade: bool = False,
        upgrade_digest: str | None = None,
    ) -> None:
        rows = self.ctx.db.all(
            "SELECT id, kdf_params, salt, wrapped_root FROM unseal_slots WHERE kind = ? ORDER BY id", (kind,)
        )
        if not rows:
            raise VaultSealed(f"vault sealed: it has no {what} slot")
        for slot_id, params, stored_salt, stored_wrapped in rows:
            # the strict decoders (review8 R8-5): a file writer's value is exit 6 before any KDF
            kdf_params = keys.stored_kdf_params(slot_id, kind, params)
            salt, wrapped = keys.stored_slot_bytes(slot_id, stored_salt, stored_wrapped)
            try:
                root = keys.open_slot(
                    kind,
                    secret,
                    salt=salt,
                    kdf_params=kdf_params,
                    wrapped=wrapped,
                    vault_id=self.ctx.vault_id,
                    slot_id=slot_id,
                )
            except CryptoError:
                continue
            self.ctx.keyring.load_root(root)
            if not keys.slot_is_normalized(kind, kdf_params):
                # a passphrase slot from before NFC normalisation (docs/format.md section 2.1)
                self.slots.migrate_passphrase_slot(slot_id, secret)
            try:
                self._after_unseal(key_file, upgrade, upgrade_digest)
            except BaseException:
                self.ctx.keyring.seal()  # refused after the slot opened: the vault stays sealed
                raise
            return
        raise AuthenticationFailed(f"wrong {what}: no unseal slot opened")

    def _after_unseal(
        self, key_file: Path | str | None, upgrade: bool = False, upgrade_digest: str | None = None
    ) -> None:
        """Bring a vault from before custody under custody (first unseal after the upgrade), and
        finish custody rotations a crash interrupted (docs/sla.md section 5). ``upgrade``: the
        operator's explicit ``cvault upgrade`` (the only way older state gets authenticated);
        ``upgrade_digest``: the digest of the summary the operator checked (review S6)."""
        from vault.custody.service import is_custody_vault
        from vault.errors import BackendError, IntegrityFailure

        # the rows' MACs (the first unseal after the upgrade adds them) and authentic settings
        if upgrade:
            self.upgraded = self.ctx.upgrade_format(expected_digest=upgrade_digest)
        else:
            self.ctx.ensure_row_macs()
        custody = self.ctx.custody
        if not is_custody_vault(self.ctx.db):
            custody.migrate_legacy(key_file)
        if custody.pending_jobs():
            # the custodian unreachable: the jobs stay, doctor and the next command retry. A job
            # row that fails its MAC or its step check (row-MAC coverage 4) is never run: audited
            # by run_jobs, refused (exit 6) to the commands that rotate that client and named by
            # doctor; this command goes on without the rotations
            with contextlib.suppress(BackendError, IntegrityFailure):
                custody.run_jobs()

    def unseal_passphrase(
        self, passphrase: str, *, upgrade: bool = False, upgrade_digest: str | None = None
    ) -> None:
        self._unseal(
            "passphrase",
            passphrase.encode("utf-8"),
            "passphrase",
            upgrade=upgrade,
            upgrade_digest=upgrade_digest,
        )

    def unseal_key_file(
        self, path: Path | str, *, upgrade: bool = False, upgrade_digest: str | None = None
    ) -> None:
        from vault.home import read_private_file

        path = os.fspath(path)
        self.ctx.own_secret_files.add(path)  # never read as a configured credential (R4-4)
        try:
            text = read_private_file(path, "key file").decode("utf-8")
        except FileNotFoundError:
            raise VaultSealed(f"vault sealed: key file {path} not found") from None
        except (OSError, UnicodeDecodeError):
            raise VaultSealed(f"vault sealed: key file {path} cannot be read") from None
        self._unseal(
            "keyfile",
            keys.parse_key_file_text(text),
            "key file",
            key_file=path,
            upgrade=upgrade,
            upgrade_digest=upgrade_digest,
        )

    def unseal_recovery_key(
        self, recovery_key: str, *, upgrade: bool = False, upgrade_digest: str | None = None
    ) -> None:
        self._unseal(
            "recovery",
            keys.parse_recovery_key(recovery_key),
            "recovery key",
            upgrade=upgrade,
            upgrade_digest=upgrade_digest,
        )
