"""The service's vaults: :class:`VaultPool` lends each request its own ``Vault`` (own SQLite
connection, WAL: readers never block, one writer at a time) sharing one unsealed root key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.clock import Clock
from vault.errors import AuthenticationFailed, VaultLocked, VaultSealed
from vault.policy import AuditEvent
from vault.principal import SYSTEM_ROLE, Principal

if TYPE_CHECKING:
    from vault.facade import Vault

#: failed unseal attempts per window from all non-loopback sources together, and from any one
#: source (docs/service.md, "Unseal"); the host's own loopback path is never locked by the others
UNSEAL_FAILURES_MAX = 20
UNSEAL_FAILURES_PER_SOURCE = 5
UNSEAL_WINDOW_SECONDS = 600
#: the one unseal attempt running at a time is waited for at most this long
UNSEAL_WAIT_SECONDS = 10
UNSEAL_HOW = ("key_file", "passphrase", "recovery_key")


class VaultPool:
    """Vaults lent to requests, one at a time each; all share the unsealed root key.

    A Vault holds one SQLite connection and per-object caches, so it must not serve two requests
    at once; opening one costs ~1 ms, so idle ones are kept (at most ``keep``) for reuse.

    Every pooled connection's writes take one shared ``write_lock`` (``Database(write_lock=...)``)
    before SQLite's own: without it, concurrent requests that each commit an audit event meet
    SQLite's busy handler, which does not queue: a loser sleeps 1, 2, 5, 10, 15, 20, 25 ... ms
    between retries, so it waits for the next sleep to end, not for the holder's ~1 ms commit.
    Measured with 4 clients: p99 of the wait for ``BEGIN IMMEDIATE`` 55 ms (commit itself p99
    5 ms), which was the whole p99 of a read. With the lock a waiter is woken as soon as the holder
    commits. SQLite's lock and busy timeout still arbitrate with other processes (a local
    ``cvault`` command on the service host)."""

    def __init__(
        self,
        home: Path | str,
        *,
        clock: Clock | None = None,
        keep: int = 64,
        unseal_failures_max: int = UNSEAL_FAILURES_MAX,
        unseal_window: float = UNSEAL_WINDOW_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        cache_seconds: float = 900.0,
        host_write_lock: bool = False,
        audit_group=None,
    ):
        from vault.custody.cache import BoundedCache

        self.home = Path(home)
        self.clock = clock
        self.keep = keep
        #: unwrapped custody secrets and client keys, shared by the pooled vaults for at most
        #: ``cache_seconds`` (docs/service.md, "Key cache"); a shred empties its client's entries
        self.custody_cache = BoundedCache(cache_seconds, monotonic=monotonic)
        self.key_cache = BoundedCache(cache_seconds, monotonic=monotonic)
        #: ``cvault serve --workers N``: told the client id when a shred or rotation here forgets a
        #: client's cached keys, so every other process of the service drops its copies too
        #: (:mod:`vault.server.workers`) before the shred goes on
        self.on_forget: Callable[[str], None] | None = None
        self.custody_cache.on_forget = self.key_cache.on_forget = self._forgotten
        self.unseal_failures_max = unseal_failures_max
        self.unseal_window = unseal_window
        self._monotonic = monotonic
        self._free: list[Vault] = []
        self._lock = threading.Lock()
        self._root: bytes | None = None
        self._write_lock: Any = threading.RLock()
        if host_write_lock:
            # several worker processes on this vault (vault.server.workers): queue in the kernel
            from vault.home import VaultHome
            from vault.locks import HostWriteLock

            self._write_lock = HostWriteLock(VaultHome(self.home).locks)
        #: ``cvault serve --workers N``: every unseal is asked of the supervisor, which runs it
        #: (its throttle and its one-at-a-time lock are the service's) and hands the root key to
        #: every worker (:mod:`vault.server.workers`); None: this process unseals by itself
        self.unseal_via: Callable[[str, str, str | None, str | None], None] | None = None
        #: called with the root key after a successful unseal, inside the unseal lock (the
        #: supervisor hands it to its workers before the unseal is answered)
        self.on_unsealed: Callable[[bytes], None] | None = None
        from vault.audit.log import GroupCommit

        #: how concurrent requests' audit events are committed: this process's group commit, or a
        #: worker's share of the supervisor's (``cvault serve --workers N``:
        #: :class:`vault.server.shared_audit.SharedAuditWriter`)
        self.audit_group = audit_group if audit_group is not None else GroupCommit()
        #: one unseal attempt at a time (each runs Argon2id with 64 MiB), and a global cap on
        #: failures whatever the source address
        self._unseal_lock = threading.Lock()
        self._unseal_failures: dict[str, list[float]] = {}
        probe = self._open()  # fails early: missing vault
        self.vault_id = probe.ctx.vault_id.hex()
        self._free.append(probe)

    @property
    def sealed(self) -> bool:
        return self._root is None

    def _open(self) -> Vault:
        from vault.facade import Vault

        vault = Vault.open(
            self.home,
            clock=self.clock,
            write_lock=self._write_lock,
            custody_options={"cache": self.custody_cache},
        )
        vault.ctx.client_key_cache = self.key_cache
        vault.ctx.audit.group = self.audit_group  # concurrent requests share audit commits
        return vault

    def unseal(self, how: str, secret: str, origin: str | None = None, source: str | None = None) -> None:
        """``how``: key_file (a path), passphrase or recovery_key. Raises like the facade.

        Serialized (Argon2id costs 64 MiB per attempt). Failures are throttled per ``source`` (an
        address, an IPv6 /64: at most UNSEAL_FAILURES_PER_SOURCE per window) and, against guessing
        from many addresses, for all non-loopback sources together; a loopback source (the host
        itself) is never locked by failures from elsewhere, and ``source="host"`` (the Unix
        socket of :mod:`vault.server.host_unseal`, and the key file at start) is never locked at
        all, so network junk cannot lock the operator out (issue 11). Every failure and
        throttled attempt, and every unseal through the
        API (``origin`` given), is written to the audit log (which works while sealed). The
        key-file unseal at start is in the service log."""
        if how not in UNSEAL_HOW:
            raise ValueError(f"unknown unseal method {how}")
        if self.unseal_via is not None:
            self.unseal_via(how, secret, origin, source)
            return
        if not self._unseal_lock.acquire(timeout=UNSEAL_WAIT_SECONDS):
            raise VaultLocked("another unseal attempt is running; try again")
        try:
            from vault.server.limits import is_loopback

            now = self._monotonic()
            key = source or "host"
            for k in list(self._unseal_failures):
                kept = [t for t in self._unseal_failures[k] if now - t < self.unseal_window]
                if kept:
                    self._unseal_failures[k] = kept
                else:
                    del self._unseal_failures[k]
            local = key == "host" or is_loopback(key)
            remote_failures = sum(
                len(v) for k, v in self._unseal_failures.items() if not (k == "host" or is_loopback(k))
            )
            refusal = None
            if key == "host":
                pass  # the host socket (vault.server.host_unseal): never locked by anyone
            elif len(self._unseal_failures.get(key, ())) >= min(
                UNSEAL_FAILURES_PER_SOURCE, self.unseal_failures_max
            ):
                refusal = "unseal locked for this address: too many failed attempts; wait and try again"
            elif not local and remote_failures >= self.unseal_failures_max:
                refusal = (
                    "unseal locked: too many failed attempts from the network; unseal on the host itself"
                )
            if refusal is not None:
                with self.lease(unsealed=False) as vault:
                    who = Principal(
                        name="operator",
                        roles=frozenset({SYSTEM_ROLE}),
                        kind="system",
                        origin=origin or "service",
                    )
                    vault.ctx.record_outcome(
                        who, AuditEvent.SERVICE_UNSEAL, "deny", reason="throttled: " + refusal.split(":")[0]
                    )
                raise VaultLocked(refusal)
            with self.lease(unsealed=False) as vault:
                if vault.unsealed:
                    return
                operator = Principal(
                    name="operator", roles=frozenset({SYSTEM_ROLE}), kind="system", origin=origin or "service"
                )
                what = how.replace("_", " ")
                try:
                    getattr(vault, f"unseal_{how}")(secret)
                except AuthenticationFailed:
                    self._unseal_failures.setdefault(key, []).append(now)
                    vault.ctx.record_outcome(
                        operator, AuditEvent.SERVICE_UNSEAL, "deny", reason=f"wrong {what}"
                    )
                    raise
                self._root = vault.ctx.keyring.root()
                if self.on_unsealed is not None:
                    self.on_unsealed(self._root)
                if origin is not None:
                    vault.ctx.record_outcome(
                        operator, AuditEvent.SERVICE_UNSEAL, "ok", reason=f"unsealed with a {what}"
                    )
        finally:
            self._unseal_lock.release()

    def _forgotten(self, client_id: str) -> None:
        if self.on_forget is not None:
            self.on_forget(client_id)

    def forget_here(self, client_id: str) -> int:
        """Drop this process's cached keys and custody secrets of a client another process of the
        service forgot (not passed on again); returns how many entries were dropped."""
        return self.key_cache.forget_client(client_id, share=False) + self.custody_cache.forget_client(
            client_id, share=False
        )

    @property
    def root(self) -> bytes | None:
        """The unsealed root key (None while sealed): what the supervisor of ``cvault serve
        --workers N`` hands to a worker it starts (never written anywhere)."""
        return self._root

    def load_root(self, root: bytes) -> None:
        """Take the root key another process of the service unsealed with (a worker's share of
        the supervisor's unseal, :mod:`vault.server.workers`); pooled vaults load it when lent."""
        self._root = bytes(root)

    @contextmanager
    def lease(self, *, unsealed: bool = True) -> Iterator[Vault]:
        if unsealed and self._root is None:
            raise VaultSealed("vault sealed: an operator must unseal the service (cvault operator unseal)")
        with self._lock:
            vault = self._free.pop() if self._free else None
        if vault is None:
            vault = self._open()
        root = self._root
        if root is not None and not vault.unsealed:
            vault.ctx.keyring.load_root(root)
            try:
                vault.ctx.ensure_row_macs()  # the marker and the settings it reads are authentic
            except BaseException:
                vault.close()
                raise
        try:
            yield vault
        finally:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(vault)
                    vault = None
            if vault is not None:
                vault.close()

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for vault in free:
            vault.close()
        self._root = None
