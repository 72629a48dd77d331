"""Remote replica (OneDrive) configuration and the persistent outbox (SPEC 8).

Every local blob write queues an ``outbox`` row ('put'); every destroyed version or shred queues a
'delete'. ``push`` drains the outbox with concurrent workers: for each blob only its *last* queued
operation matters (a put followed by a delete is just a delete). A failed operation stays queued
with an attempt count, a back-off time and a one-line error; nothing is lost. ``pull`` restores
missing or corrupt local blobs from the remote; ``verify`` compares remote quickXorHashes with the
local blobs. Only ciphertext and opaque names ever reach the remote.

The OneDrive modules (requests, msal) are imported only here, and only when a remote is configured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vault.clock import from_epoch, rfc3339, to_epoch
from vault.context import VaultContext
from vault.errors import (
    AccessDenied,
    BackendError,
    BlobNotFound,
    InvalidInput,
    NotFound,
    TransientBackendError,
)
from vault.keys import PURPOSE_TOKEN_CACHE_SEAL
from vault.locks import exclusive
from vault.policy import Action
from vault.principal import Principal

CONFIG_KEY = "remote.onedrive"
PUSH_LOCK = "sync-push.lock"
TOKEN_CACHE_NAME = "graph-token-cache.sealed"
RETRY_BASE_SECONDS = 30  # first retry of a failed outbox item after 30 s ...
RETRY_CAP_SECONDS = 3600  # ... doubling up to an hour
Progress = Callable[[int, int], None]


@dataclass
class _Task:
    """The last queued operation of one blob, covering every outbox row up to ``max_id``."""

    blob_name: str
    op: str
    max_id: int
    attempts: int
    next_at: int


def remote_configured(ctx: VaultContext) -> bool:
    return ctx.db.one("SELECT 1 FROM meta WHERE key = ?", (CONFIG_KEY,)) is not None


class SyncService:
    def __init__(self, ctx: VaultContext):
        self.ctx = ctx
        self._remote = None
        #: tests and the service may inject a ready backend (and GraphClient options)
        self.remote_override = None
        self.client_options: dict = {}  # GraphClient options (sleep, rng, ...)
        self.auth_options: dict = {}  # token provider options (sleep, ...)

    # --- configuration --------------------------------------------------------------------------

    def configure(self, principal: Principal, settings: dict) -> dict:
        """Set the replica. Only on the vault's own host: the configuration names files the
        service reads (a client secret, a certificate) and the endpoints it sends them to."""
        from vault.backends.onedrive_config import OneDriveConfig

        self._refuse_remote_caller(principal)
        try:
            config = OneDriveConfig.from_dict(settings).validate()
        except TypeError as exc:
            raise InvalidInput(f"OneDrive configuration: {exc}") from None
        self._refuse_vault_files(config)
        self.ctx.authorize(principal, Action.SYNC)
        with self.ctx.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (CONFIG_KEY, json.dumps(config.to_dict(), sort_keys=True)),
            )
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok",
            reason=f"remote configured: OneDrive drive {config.drive_id[:12] or config.site_hostname}",
        )
        self._remote = None
        return config.to_dict()

    def _refuse_remote_caller(self, principal: Principal) -> None:
        if principal.origin != "cli":
            raise AccessDenied(
                "access denied: the remote replica is configured on the vault's host "
                "only (cvault remote set there)"
            )

    def _refuse_vault_files(self, config) -> None:
        """A credential path must not be the vault's own secret material (key file, passphrase
        file, anything in the vault folder): those would be sent as the OAuth client secret."""
        home = os.path.realpath(self.ctx.home.root)
        unseal = {
            os.path.realpath(p)
            for p in (os.environ.get("CVAULT_KEY_FILE"), os.environ.get("CVAULT_PASSPHRASE_FILE"))
            if p
        }
        for path in (config.secret_file, config.certificate_file):
            if not path:
                continue
            real = os.path.realpath(path)
            if real in unseal or os.path.commonpath([real, home]) == home:
                raise InvalidInput(
                    "OneDrive configuration: the credential file must not be the "
                    "vault's key or passphrase file or lie in the vault folder"
                )

    def show_config(self, principal: Principal) -> dict | None:
        """The replica configuration (paths and ids, never a secret), for admins."""
        self.ctx.authorize(principal, Action.SYNC)
        config = self.config()
        return None if config is None else config.to_dict()

    def config(self):
        row = self.ctx.db.one("SELECT value FROM meta WHERE key = ?", (CONFIG_KEY,))
        if row is None:
            return None
        from vault.backends.onedrive_config import OneDriveConfig

        return OneDriveConfig.from_dict(json.loads(row[0]))

    def remove_config(self, principal: Principal) -> None:
        self._refuse_remote_caller(principal)
        self.ctx.authorize(principal, Action.SYNC)
        with self.ctx.db.write() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (CONFIG_KEY,))
        (self.ctx.home.root / TOKEN_CACHE_NAME).unlink(missing_ok=True)
        self.ctx.record_outcome(principal, Action.SYNC, "ok", reason="remote removed")
        self._remote = None

    def token_cache(self):
        from vault.backends.graph_auth import SealedTokenCache

        keyring = self.ctx.keyring
        return SealedTokenCache(
            self.ctx.home.root / TOKEN_CACHE_NAME,
            seal=lambda data: keyring.seal_for(PURPOSE_TOKEN_CACHE_SEAL, data, "graph-token-cache"),
            unseal=lambda data: keyring.unseal_for(PURPOSE_TOKEN_CACHE_SEAL, data, "graph-token-cache"),
        )

    def provider(self, prompt: Callable[[str], None] | None = None):
        from vault.backends.graph_auth import provider_from_config

        config = self.config()
        if config is None:
            raise NotFound("no remote configured: run 'cvault remote set'")
        return provider_from_config(config, cache=self.token_cache(), prompt=prompt, **self.auth_options)

    def remote(self):
        """The configured remote backend, or None."""
        if self.remote_override is not None:
            return self.remote_override
        if self._remote is None:
            config = self.config()
            if config is None:
                return None
            from vault.backends.onedrive import OneDriveBackend

            self._remote = OneDriveBackend.from_config(config, self.provider(), **self.client_options)
        return self._remote

    def sign_in(self, principal: Principal, prompt: Callable[[str], None]) -> str:
        """Delegated device-code sign-in for a single admin (credential ``device-code``)."""
        self.ctx.authorize(principal, Action.SYNC)
        provider = self.provider(prompt=prompt)
        if not hasattr(provider, "sign_in"):
            raise InvalidInput("the configured credential is not device-code; nothing to sign in")
        account = provider.sign_in()
        self.ctx.record_outcome(principal, Action.SYNC, "ok", reason="remote device-code sign-in")
        return account

    def _require_remote(self):
        remote = self.remote()
        if remote is None:
            raise NotFound("no remote configured: run 'cvault remote set'")
        return remote

    # --- status ---------------------------------------------------------------------------------

    def pending(self) -> dict:
        rows = self.ctx.db.all(
            "SELECT op, count(*), sum(attempts > 0), min(queued_at) FROM outbox GROUP BY op"
        )
        out = {"put": 0, "delete": 0, "failing": 0, "oldest": None}
        for op, count, failing, oldest in rows:
            out[op] = count
            out["failing"] += failing or 0
            if oldest is not None and (out["oldest"] is None or oldest < out["oldest"]):
                out["oldest"] = oldest
        if out["oldest"] is not None:
            out["oldest"] = rfc3339(from_epoch(out["oldest"]))
        return out

    def status(self, principal: Principal) -> dict:
        self.ctx.authorize(principal, Action.SYNC)
        config = self.config()
        last_error = self.ctx.db.one(
            "SELECT last_error FROM outbox WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
        )
        return {
            "remote": None
            if config is None
            else {
                "kind": "onedrive",
                "drive_id": config.drive_id,
                "root_folder": config.root_folder,
                "graph_base_url": config.graph_base_url,
                "credential": config.credential,
            },
            "pending": self.pending(),
            "last_error": last_error[0] if last_error else None,
        }

    # --- push -----------------------------------------------------------------------------------

    def _tasks(self, now: int) -> list[_Task]:
        rows = self.ctx.db.all("SELECT id, op, blob_name, attempts, next_attempt_at FROM outbox ORDER BY id")
        tasks: dict[str, _Task] = {}
        for row_id, op, name, attempts, next_at in rows:
            earlier = tasks.get(name)
            tasks[name] = _Task(
                name,
                op,
                row_id,
                max(attempts, earlier.attempts if earlier else 0),
                max(next_at, earlier.next_at if earlier else 0),
            )
        return [t for t in tasks.values() if t.next_at <= now]

    def push(
        self, principal: Principal, *, workers: int = 8, progress: Progress | None = None, force: bool = False
    ) -> dict:
        """Drain the outbox. ``force`` ignores back-off times (retry everything now)."""
        self.ctx.authorize(principal, Action.SYNC)
        remote = self._require_remote()
        with exclusive(self.ctx.home.locks, PUSH_LOCK) as acquired:
            if not acquired:  # a second push could re-upload a blob the first one just deleted
                return {
                    "uploaded": 0,
                    "deleted": 0,
                    "failed": 0,
                    "errors": [],
                    "pending": self.pending(),
                    "skipped": "another push is running",
                }
            return self._push(principal, remote, workers, progress, force)

    def _push(
        self, principal: Principal, remote, workers: int, progress: Progress | None, force: bool
    ) -> dict:
        now = to_epoch(self.ctx.now())
        tasks = self._tasks(2**62 if force else now)
        done = {"uploaded": 0, "deleted": 0, "failed": 0, "errors": []}

        def run(task: _Task) -> tuple[_Task, str | None, bool]:
            try:
                if task.op == "delete":
                    remote.delete(task.blob_name)
                else:
                    remote.put(task.blob_name, self.ctx.blobs.get(task.blob_name))
                return task, None, False
            except BlobNotFound:
                return task, "the local blob is missing (run 'cvault doctor')", False
            except TransientBackendError as exc:
                return task, exc.message, True
            except BackendError as exc:
                return task, exc.message, False

        finished = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for task, error, transient in pool.map(run, tasks):
                finished += 1
                self._settle(task, error, now)
                if error is None:
                    done["uploaded" if task.op == "put" else "deleted"] += 1
                else:
                    done["failed"] += 1
                    if len(done["errors"]) < 5:
                        done["errors"].append(f"{task.op} {task.blob_name}: {error}")
                if progress:
                    progress(finished, len(tasks))
        done["pending"] = self.pending()
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok" if not done["failed"] else "error",
            reason=f"push: {done['uploaded']} uploaded, {done['deleted']} deleted, {done['failed']} failed",
        )
        return done

    def _settle(self, task: _Task, error: str | None, now: int) -> None:
        with self.ctx.db.write() as conn:
            if error is None:
                conn.execute(
                    "DELETE FROM outbox WHERE blob_name = ? AND id <= ?", (task.blob_name, task.max_id)
                )
                return
            delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(task.attempts, 10))
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE blob_name = ? AND id <= ?",
                (now + delay, error[:300], task.blob_name, task.max_id),
            )

    # --- pull and verify ------------------------------------------------------------------------

    def _referenced(self) -> set[str]:
        names = {
            r[0] for r in self.ctx.db.all("SELECT blob_name FROM record_versions WHERE blob_name IS NOT NULL")
        }
        return names

    @staticmethod
    def _hash(data: bytes) -> str:
        from vault.backends.quickxor import quickxorhash

        return quickxorhash(data)

    def pull(self, principal: Principal, *, workers: int = 8, progress: Progress | None = None) -> dict:
        """Restore every referenced blob that is missing or corrupt locally from the remote."""
        self.ctx.authorize(principal, Action.SYNC)
        remote = self._require_remote()
        referenced = self._referenced()
        listing = {name: qx for name, qx, _ in remote.list_with_hashes()}
        from vault.audit.checkpoints import is_checkpoint_blob

        wanted = [n for n in sorted(listing) if n in referenced or is_checkpoint_blob(n)]
        result = {
            "checked": 0,
            "restored": 0,
            "missing_remote": sorted(referenced - set(listing)),
            "errors": [],
        }

        from vault.services.secrets import SecretService

        records = SecretService(self.ctx)
        need = []
        for name in wanted:  # database and local reads stay on this thread
            result["checked"] += 1
            try:
                local = self.ctx.blobs.get(name)
            except BlobNotFound:
                local = None
            if local is None or (
                self._hash(local) != listing[name] and records.blob_is_authentic(name, local) is False
            ):
                need.append(name)  # a good local copy is never replaced

        def fetch(name: str) -> tuple[str, bytes | None, str | None]:
            try:
                return name, remote.get(name), None
            except BackendError as exc:
                return name, None, exc.message

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, (name, data, error) in enumerate(pool.map(fetch, need), 1):
                if error is None and listing[name] and self._hash(data) != listing[name]:
                    error = "remote copy does not match its quickXorHash"
                if error is None and not self._authentic(records, name, data):
                    error = "remote copy failed verification"
                if error is None:
                    self.ctx.blobs.put(name, data)
                    result["restored"] += 1
                else:
                    result["errors"].append(f"{name}: {error}")
                if progress:
                    progress(i, len(need))
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok" if not result["errors"] else "error",
            reason=f"pull: {result['restored']} restored of {result['checked']}",
        )
        return result

    def _authentic(self, records, name: str, data: bytes) -> bool:
        """A record blob must decrypt under its record key; a checkpoint copy must carry the
        vault's audit signature. Anything else the remote offers is not restored."""
        from vault.audit.checkpoints import authentic_blob, is_checkpoint_blob

        if is_checkpoint_blob(name):
            from vault.audit.signing import AuditSigner

            public = AuditSigner(self.ctx.db, self.ctx.keyring).public_key()
            return authentic_blob(data, name, self.ctx.vault_id, public)
        return records.blob_is_authentic(name, data) is not False

    def verify(self, principal: Principal, *, progress: Progress | None = None) -> dict:
        """Compare the remote's quickXorHash of every blob with the local blob."""
        self.ctx.authorize(principal, Action.SYNC)
        remote = self._require_remote()
        listing = {name: qx for name, qx, _ in remote.list_with_hashes()}
        local = sorted(self.ctx.blobs.list())
        queued = {r[0] for r in self.ctx.db.all("SELECT blob_name FROM outbox")}
        result = {
            "checked": 0,
            "matching": 0,
            "mismatched": [],
            "missing_remote": [],
            "pending_upload": [],
            "extra_remote": sorted(set(listing) - set(local) - queued),
        }
        for i, name in enumerate(local, 1):
            result["checked"] += 1
            if name not in listing:
                (result["pending_upload"] if name in queued else result["missing_remote"]).append(name)
            elif listing[name] != self._hash(self.ctx.blobs.get(name)):
                result["mismatched"].append(name)
            else:
                result["matching"] += 1
            if progress:
                progress(i, len(local))
        result["ok"] = not (result["mismatched"] or result["missing_remote"])
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok" if result["ok"] else "error",
            reason=f"verify: {result['matching']} match, {len(result['mismatched'])}"
            f" mismatched, {len(result['missing_remote'])} missing remotely",
        )
        return result

    def fetch_lost_blob(self, name: str) -> bytes:
        """Read path fallback: a blob lost locally is fetched from the remote and restored."""
        data = self._require_remote().get(name)
        self.ctx.blobs.put(name, data)
        return data
