"""The facade's surface as a type: :class:`VaultAPI`.

Two implementations satisfy it: the embedded facade :class:`vault.facade.Vault` and the service
client :class:`cli.service_client.client.ServiceVault`; ``CliState.vault()`` returns a
``VaultAPI``, so mypy checks every command against both. The operations served over HTTPS are the
registry's (:mod:`vault.api_spec`, checked against the facade by ``tests/server/test_registry.py``);
the rest (slots, doctor, the replica's configuration and sign-in) are host-only: the service
client refuses them.

Dates and durations may be given as text (``"+90d"``, ``"30d"``): the service parses them with its
own clock. Nothing here is imported at run time by anything but type checkers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vault.audit.verify import VerifyResult
    from vault.principal import Principal
    from vault.records import SecretRecord

Progress = Callable[[int, int], None]
#: the caller's own write, run first in an SLA change's transaction (library only: api_spec WITHIN)
Within = Callable[[Any], None]
When = datetime | str
#: ``list`` is also a method name of several services: these aliases keep it a type in their scope
Rows = list[dict]
Roles = list[str] | tuple[str, ...]


class LoginResultLike(Protocol):
    @property
    def token(self) -> str: ...

    def as_dict(self) -> dict: ...


class DoctorReportLike(Protocol):
    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict: ...


class UsersAPI(Protocol):
    def login(
        self,
        name: str,
        password: str,
        *,
        totp: str | None = None,
        recovery_code: str | None = None,
        origin: str = "cli",
    ) -> LoginResultLike: ...

    def enroll(self, name: str, code: str, password: str, *, origin: str = "cli") -> dict: ...

    def resume(self, token: str, *, origin: str = "cli") -> Principal: ...

    def step_up(
        self, principal: Principal, code: str | None = None, *, recovery_code: str | None = None
    ) -> dict: ...

    def logout(self, principal: Principal) -> None: ...

    def logout_all(self, principal: Principal) -> dict: ...

    def whoami(self, principal: Principal) -> dict: ...

    def passwd(self, principal: Principal, current: str, new: str) -> None: ...

    def add(self, principal: Principal, name: str, roles: Roles) -> dict: ...

    def list(self, principal: Principal) -> Rows: ...

    def show(self, principal: Principal, name: str) -> dict: ...

    def disable(self, principal: Principal, name: str) -> dict: ...

    def enable(self, principal: Principal, name: str) -> dict: ...

    def grant(self, principal: Principal, name: str, role: str) -> dict: ...

    def revoke(self, principal: Principal, name: str, role: str) -> dict: ...

    def unlock(self, principal: Principal, name: str) -> dict: ...

    def reset_totp(self, principal: Principal, name: str) -> dict: ...

    def approve(self, principal: Principal, name: str) -> dict: ...

    def reset(self, principal: Principal, name: str) -> dict: ...

    def confirm(self, principal: Principal, name: str) -> dict: ...

    def train(self, principal: Principal, name: str, until: When) -> dict: ...


class AccessAPI(Protocol):
    def assign(
        self, principal: Principal, client_name: str, user_name: str, until: When | None = None
    ) -> dict: ...

    def unassign(self, principal: Principal, client_name: str, user_name: str) -> dict: ...

    def client_access(self, principal: Principal, client_name: str) -> dict: ...

    def user_access(self, principal: Principal, user_name: str) -> dict: ...


class TeamsAPI(Protocol):
    def add(self, principal: Principal, name: str, *, description: str = "") -> dict: ...

    def list(self, principal: Principal) -> Rows: ...

    def show(self, principal: Principal, name: str) -> dict: ...

    def rm(self, principal: Principal, name: str) -> dict: ...

    def member_add(self, principal: Principal, team: str, user_name: str) -> dict: ...

    def member_rm(self, principal: Principal, team: str, user_name: str) -> dict: ...

    def assign(
        self, principal: Principal, client_name: str, team: str, until: When | None = None
    ) -> dict: ...

    def unassign(self, principal: Principal, client_name: str, team: str) -> dict: ...

    def memberships(self, principal: Principal, user_name: str) -> Rows: ...


class ContractsAPI(Protocol):
    def import_contracts(self, principal: Principal, lines: list[str], *, dry_run: bool = False) -> dict: ...


class IntegrationsAPI(Protocol):
    def add(self, principal: Principal, name: str) -> dict: ...

    def list(self, principal: Principal) -> Rows: ...

    def rm(self, principal: Principal, name: str) -> dict: ...


class ClientsAPI(Protocol):
    def add(
        self, principal: Principal, name: str, *, sla_end: When, grace_days: int | None = None
    ) -> dict: ...

    def list(self, principal: Principal) -> Rows: ...

    def show(self, principal: Principal, name: str) -> dict: ...

    def rotate_key(self, principal: Principal, name: str, progress: Progress | None = None) -> dict: ...


class SecretsAPI(Protocol):
    def put(
        self,
        principal: Principal,
        client_name: str,
        path: str,
        kind: str,
        fields: dict[str, Any],
        *,
        replace: bool = False,
    ) -> dict: ...

    def edit(
        self,
        principal: Principal,
        client_name: str,
        path: str,
        *,
        set_fields: dict[str, Any] | None = None,
        unset: list[str] | tuple[str, ...] = (),
    ) -> dict: ...

    def restore(self, principal: Principal, client_name: str, path: str, *, version: int) -> dict: ...

    def otp(self, principal: Principal, client_name: str, path: str) -> dict: ...

    def attach(
        self, principal: Principal, client_name: str, path: str, data: bytes, *, name: str
    ) -> dict: ...

    def detach(self, principal: Principal, client_name: str, path: str, *, name: str) -> dict: ...

    def attachment(
        self, principal: Principal, client_name: str, path: str, name: str, version: int | None = None
    ) -> dict: ...

    def search(
        self, principal: Principal, term: str, *, client: str | None = None, kind: str | None = None
    ) -> Rows: ...

    def list_all(self, principal: Principal) -> Rows: ...

    def get(
        self, principal: Principal, client_name: str, path: str, version: int | None = None
    ) -> SecretRecord: ...

    def list(self, principal: Principal, client_name: str) -> Rows: ...

    def history(self, principal: Principal, client_name: str, path: str) -> Rows: ...

    def rm(self, principal: Principal, client_name: str, path: str, *, purge: bool = False) -> dict: ...

    def import_records(
        self,
        principal: Principal,
        client_name: str,
        lines: Iterable[str],
        progress: Progress | None = None,
        *,
        replace: bool = False,
    ) -> dict: ...

    def export_records(self, principal: Principal, client_name: str) -> dict: ...

    def export(self, principal: Principal, client_name: str, out: Path) -> dict: ...

    def import_file(
        self,
        principal: Principal,
        fmt: str,
        path: str | os.PathLike[str],
        *,
        clients: Mapping[str, str] | None = None,
        default_client: str | None = None,
        password: str | None = None,
        keyfile: str | os.PathLike[str] | bytes | None = None,
        mapping: Mapping[str, str] | None = None,
        kind: str = "access",
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> dict: ...


class SlaAPI(Protocol):
    def show(self, principal: Principal, name: str) -> dict: ...

    def renew(
        self,
        principal: Principal,
        name: str,
        until: When,
        *,
        grace_days: int | None = None,
        within: Within | None = None,
    ) -> dict: ...

    def expire(
        self, principal: Principal, name: str, *, reason: str, within: Within | None = None
    ) -> dict: ...

    def request_shred(self, principal: Principal, name: str, *, reason: str) -> dict: ...

    def approve_shred(self, principal: Principal, name: str) -> dict: ...

    def min_grace(self, principal: Principal) -> dict: ...

    def request_min_grace(self, principal: Principal, days: int) -> dict: ...

    def approve_min_grace(self, principal: Principal, days: int) -> dict: ...

    def upcoming(self, principal: Principal, within: timedelta | str = "30d") -> Rows: ...

    def overview(
        self,
        principal: Principal,
        *,
        name_contains: str = "",
        state: str = "",
        engineer: str = "",
        within_days: int | None = None,
        sort: str = "client",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> dict: ...

    def requests(self, principal: Principal) -> Rows: ...

    def sweep(
        self,
        principal: Principal,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        every: timedelta | str | None = None,
    ) -> dict: ...

    def certificate(self, principal: Principal, name: str) -> dict: ...


class AuditAPI(Protocol):
    def public_key(self) -> dict: ...

    def checkpoint(self, principal: Principal) -> dict: ...

    def recover(self, principal: Principal, acknowledge: int) -> dict: ...

    def log(
        self,
        principal: Principal,
        *,
        user: str | None = None,
        client: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: When | None = None,
        until: When | None = None,
        limit: int | None = 100,
        after_seq: int | None = None,
        before: int | None = None,
    ) -> Rows: ...

    def export(
        self,
        principal: Principal,
        format: str,
        *,
        out: Path | str | None = None,
        write: Callable[[str], None] | None = None,
        details: bool = True,
        after_seq: int | None = None,
        since: datetime | str | None = None,
    ) -> dict: ...

    def verify(
        self, principal: Principal, progress: Progress | None = None, *, all_signatures: bool = False
    ) -> VerifyResult: ...

    def report(
        self,
        principal: Principal,
        *,
        since: When | None = None,
        until: When | None = None,
        full: bool = False,
    ) -> dict: ...

    def prune(self, principal: Principal, before: When) -> dict: ...


class SyncAPI(Protocol):
    def status(self, principal: Principal) -> dict: ...

    def push(
        self,
        principal: Principal,
        *,
        workers: int = 8,
        progress: Progress | None = None,
        force: bool = False,
    ) -> dict: ...

    def pull(self, principal: Principal, *, workers: int = 8, progress: Progress | None = None) -> dict: ...

    def verify(self, principal: Principal, *, progress: Progress | None = None) -> dict: ...

    def show_config(self, principal: Principal) -> dict | None: ...

    # host-only (the service client refuses them)
    def configure(self, principal: Principal, settings: dict) -> dict: ...

    def remove_config(self, principal: Principal) -> None: ...

    def sign_in(self, principal: Principal, prompt: Callable[[str], None]) -> str: ...


class SlotsAPI(Protocol):
    """Host-only: unseal slots."""

    def list_slots(self) -> Rows: ...

    def add_slot(
        self,
        kind: str,
        secret: bytes,
        *,
        label: str,
        kdf_params: dict | None = None,
        actor: str = "operator",
    ) -> int: ...

    def create_key_file_slot(self, path: Path, *, actor: str = "operator") -> int: ...

    def add_recovery_slot(self, *, actor: str = "operator") -> tuple[int, str]: ...

    def remove(self, slot_id: int, *, actor: str = "operator") -> None: ...


class MaintenanceAPI(Protocol):
    """Host-only: ``cvault doctor``."""

    def doctor(self, principal: Principal) -> DoctorReportLike: ...


class CustodyAPI(Protocol):
    """Host-only: where the client keys' custody secrets live (docs/sla.md section 6)."""

    def show(self, principal: Principal) -> dict: ...

    def set_local(self, principal: Principal, file: str, progress: Progress | None = None) -> dict: ...

    def set_keyvault(
        self, principal: Principal, settings: dict, progress: Progress | None = None
    ) -> dict: ...


class BackupsAPI(Protocol):
    """Host-only: encrypted backups of the whole vault."""

    def create(
        self,
        principal: Principal,
        *,
        out: Path | str | None = None,
        remote: bool = False,
        keep: int | None = None,
        progress: Progress | None = None,
    ) -> dict: ...


class VaultAPI(Protocol):
    @property
    def users(self) -> UsersAPI: ...

    @property
    def access(self) -> AccessAPI: ...

    @property
    def teams(self) -> TeamsAPI: ...

    @property
    def contracts(self) -> ContractsAPI: ...

    @property
    def integrations(self) -> IntegrationsAPI: ...

    @property
    def clients(self) -> ClientsAPI: ...

    @property
    def secrets(self) -> SecretsAPI: ...

    @property
    def sla(self) -> SlaAPI: ...

    @property
    def audit(self) -> AuditAPI: ...

    @property
    def sync(self) -> SyncAPI: ...

    @property
    def slots(self) -> SlotsAPI: ...

    @property
    def maintenance(self) -> MaintenanceAPI: ...

    @property
    def custody(self) -> CustodyAPI: ...

    @property
    def backups(self) -> BackupsAPI: ...

    @property
    def unsealed(self) -> bool: ...

    @property
    def session_scope(self) -> str:
        """What a session file is bound to (the vault id, or the service address)."""
        ...

    def unseal_key_file(self, path: Path | str) -> None: ...

    def unseal_passphrase(self, passphrase: str) -> None: ...

    def close(self) -> None: ...
