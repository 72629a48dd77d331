"""Remote replica (OneDrive): configuration, push, pull and verify (docs/spec.md §8).

Every local blob write queues an ``outbox`` row ('put'); every destroyed version or shred queues a
'delete'. ``push`` drains the outbox (:mod:`vault.sync.outbox`) with concurrent workers. ``pull``
restores missing or corrupt local blobs from the remote; ``verify`` compares remote quickXorHashes
with the local blobs. Only ciphertext and opaque names ever reach the remote.

Collaborators are injected (the facade wires them): ``blob_verifier(name, data)`` says whether a
copy is the authentic content of a record version (the secrets service's), so this module never
imports the secrets service; ``remote`` replaces the configured OneDrive backend (tests, bench);
``graph_options`` and ``auth_options`` go to the Graph client and the token provider (an injected
``sleep``, ``rng``). The OneDrive modules (requests, msal) are imported only here, and only when a
remote is configured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from vault.backends.base import Backend, HashListingBackend
from vault.clock import to_epoch
from vault.context import VaultContext
from vault.errors import AccessDenied, BackendError, BlobNotFound, InvalidInput, NotFound
from vault.keys import PURPOSE_TOKEN_CACHE_SEAL
from vault.locks import exclusive
from vault.policy import Action
from vault.principal import Principal
from vault.store import records as record_store
from vault.store import rowmac
from vault.sync import outbox

CONFIG_KEY = "remote.onedrive"
PUSH_LOCK = "sync-push.lock"
TOKEN_CACHE_NAME = "graph-token-cache.sealed"  # noqa: S105 - a file name, not a token
Progress = Callable[[int, int], None]
BlobVerifier = Callable[[str, bytes], "bool | None"]


def remote_configured(ctx: VaultContext) -> bool:
    return ctx.db.one("SELECT 1 FROM meta WHERE key = ?", (CONFIG_KEY,)) is not None


class SyncService:
    def __init__(
        self,
        ctx: VaultContext,
        *,
        blob_verifier: BlobVerifier | None = None,
        remote: Backend | None = None,
        graph_options: dict | None = None,
        auth_options: dict | None = None,
    ):
        self.ctx = ctx
        #: None: nothing is known to be authentic, so no remote copy replaces a local one
        self._blob_verifier = blob_verifier or (lambda name, data: None)
        self._given_remote = remote
        self._remote: Backend | None = None
        self._graph_options = dict(graph_options or {})
        self._auth_options = dict(auth_options or {})
        self._alarmed = False

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
            # MACed (coverage 5, review4 R4-4): the row names a file cvault reads and the hosts it
            # sends it to, so a file writer's row is refused (exit 6) before anything of it is used
            rowmac.put_meta(conn, CONFIG_KEY, json.dumps(config.to_dict(), sort_keys=True))
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
        """A credential path must not be the vault's own secret material (key, passphrase or
        custody file, TLS key, anything in the vault folder): those would be sent as the OAuth
        client secret. The same rules are checked again wherever the file is read (R4-4)."""
        rules = self.ctx.credential_rules()
        for path in (config.secret_file, config.certificate_file):
            if path and rules.refusal(path) is not None:
                raise InvalidInput(
                    "OneDrive configuration: the credential file must not be the vault's key,"
                    " passphrase or custody file, its TLS key, or lie in the vault folder"
                )

    def show_config(self, principal: Principal) -> dict | None:
        """The replica configuration (paths and ids, never a secret), for admins."""
        self.ctx.authorize(principal, Action.SYNC)
        config = self.config()
        return None if config is None else config.to_dict()

    def config(self):
        """The stored configuration, its row MAC verified first (review4 R4-4): a row that fails
        it, or carries none, is an integrity failure (exit 6, audited), never a configuration."""
        try:
            value = rowmac.meta_value(self.ctx.db.conn, CONFIG_KEY)
        except rowmac.RowTampered as exc:
            if not self._alarmed:  # once: the alarm's own append may push a checkpoint copy
                self._alarmed = True
                self.ctx.integrity_alarm(None, exc, "remote replica configuration")
            raise
        if value is None:
            return None
        from vault.backends.onedrive_config import OneDriveConfig

        return OneDriveConfig.from_dict(json.loads(value))

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
        return provider_from_config(
            config,
            cache=self.token_cache(),
            prompt=prompt,
            rules=self.ctx.credential_rules(),
            **self._auth_options,
        )

    def remote(self) -> Backend | None:
        """The configured remote backend, or None."""
        if self._given_remote is not None:
            return self._given_remote
        if self._remote is None:
            config = self.config()
            if config is None:
                return None
            from vault.backends.onedrive import OneDriveBackend

            self._remote = OneDriveBackend.from_config(config, self.provider(), **self._graph_options)
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

    def _require_remote(self) -> Backend:
        remote = self.remote()
        if remote is None:
            raise NotFound("no remote configured: run 'cvault remote set'")
        return remote

    # --- status ---------------------------------------------------------------------------------

    def pending(self) -> dict:
        return outbox.pending(self.ctx.db.conn)

    def status(self, principal: Principal) -> dict:
        self.ctx.authorize(principal, Action.SYNC)
        config = self.config()
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
            "last_error": outbox.last_error(self.ctx.db.conn),
        }

    # --- push -----------------------------------------------------------------------------------

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
            done = outbox.drain(
                self.ctx.db, self.ctx.blobs, remote, to_epoch(self.ctx.now()), workers, progress, force=force
            )
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok" if not done["failed"] else "error",
            reason=f"push: {done['uploaded']} uploaded, {done['deleted']} deleted, {done['failed']} failed",
        )
        return done

    # --- pull and verify ------------------------------------------------------------------------

    def _listing(self, remote: Backend) -> dict[str, str | None]:
        if not isinstance(remote, HashListingBackend):
            raise InvalidInput("this remote cannot list content hashes; pull and verify need them")
        return {name: qx for name, qx, _ in remote.list_with_hashes()}

    @staticmethod
    def _hash(data: bytes) -> str:
        from vault.backends.quickxor import quickxorhash

        return quickxorhash(data)

    def pull(self, principal: Principal, *, workers: int = 8, progress: Progress | None = None) -> dict:
        """Restore every referenced blob that is missing or corrupt locally from the remote."""
        self.ctx.authorize(principal, Action.SYNC)
        remote = self._require_remote()
        referenced = record_store.blob_names(self.ctx.db.conn)
        listing = self._listing(remote)
        from vault.audit.checkpoints import is_checkpoint_blob

        wanted = [n for n in sorted(listing) if n in referenced or is_checkpoint_blob(n)]
        errors: list[str] = []
        restored = 0
        need = []
        for name in wanted:  # database and local reads stay on this thread
            try:
                local = self.ctx.blobs.get(name)
            except BlobNotFound:
                local = None
            if local is None or (
                self._hash(local) != listing[name] and self._blob_verifier(name, local) is False
            ):
                need.append(name)  # a good local copy is never replaced

        def fetch(name: str) -> tuple[str, bytes | None, str | None]:
            try:
                return name, remote.get(name), None
            except BackendError as exc:
                return name, None, exc.message

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, (name, data, error) in enumerate(pool.map(fetch, need), 1):
                if data is not None and error is None:
                    if listing[name] and self._hash(data) != listing[name]:
                        error = "remote copy does not match its quickXorHash"
                    elif not self._authentic(name, data):
                        error = "remote copy failed verification"
                if data is not None and error is None:
                    self.ctx.blobs.put(name, data)
                    restored += 1
                else:
                    errors.append(f"{name}: {error}")
                if progress:
                    progress(i, len(need))
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok" if not errors else "error",
            reason=f"pull: {restored} restored of {len(wanted)}",
        )
        return {
            "checked": len(wanted),
            "restored": restored,
            "missing_remote": sorted(referenced - set(listing)),
            "errors": errors,
        }

    def _authentic(self, name: str, data: bytes) -> bool:
        """A record blob must decrypt under its record key; a checkpoint copy must carry the
        vault's audit signature. Anything else the remote offers is not restored."""
        from vault.audit.checkpoints import authentic_blob, is_checkpoint_blob

        if is_checkpoint_blob(name):
            from vault.audit.signing import AuditSigner

            public = AuditSigner(self.ctx.db, self.ctx.keyring).trusted_public_key()[0]
            return authentic_blob(data, name, self.ctx.vault_id, public)
        return self._blob_verifier(name, data) is not False

    def verify(self, principal: Principal, *, progress: Progress | None = None) -> dict:
        """Compare the remote's quickXorHash of every blob with the local blob."""
        self.ctx.authorize(principal, Action.SYNC)
        listing = self._listing(self._require_remote())
        local = sorted(self.ctx.blobs.list())
        queued = outbox.queued_names(self.ctx.db.conn)
        matching = 0
        mismatched: list[str] = []
        missing_remote: list[str] = []
        pending_upload: list[str] = []
        for i, name in enumerate(local, 1):
            if name not in listing:
                (pending_upload if name in queued else missing_remote).append(name)
            elif listing[name] != self._hash(self.ctx.blobs.get(name)):
                mismatched.append(name)
            else:
                matching += 1
            if progress:
                progress(i, len(local))
        ok = not (mismatched or missing_remote)
        self.ctx.record_outcome(
            principal,
            Action.SYNC,
            "ok" if ok else "error",
            reason=f"verify: {matching} match, {len(mismatched)} mismatched,"
            f" {len(missing_remote)} missing remotely",
        )
        return {
            "checked": len(local),
            "matching": matching,
            "mismatched": mismatched,
            "missing_remote": missing_remote,
            "pending_upload": pending_upload,
            "extra_remote": sorted(set(listing) - set(local) - queued),
            "ok": ok,
        }

    def fetch_lost_blob(self, name: str) -> bytes | None:
        """Read path fallback: a blob lost locally is fetched from the remote (None without a
        remote) and restored only if it is authentic (:meth:`_authentic`, as ``pull`` checks it:
        a pack's framing and every version in it), so a poisoned replica never lands a file in
        the local blob store. The copy is returned either way: the reader opens its own version
        from it under AEAD, and a forged one fails there as an integrity failure (exit 6)."""
        if self._given_remote is None and not remote_configured(self.ctx):
            return None
        data = self._require_remote().get(name)
        if self._authentic(name, data):
            self.ctx.blobs.put(name, data)
        return data
