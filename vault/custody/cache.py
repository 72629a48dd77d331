"""Unwrapped key material kept in memory for a bounded time (service mode, docs/service.md).

``cvault serve`` would otherwise ask the custodian (a Key Vault round trip) on every read. Entries
live at most ``ttl_seconds`` after they were stored, at most ``max_entries`` of them (the oldest
stored goes first, so entries stay in deadline order and expiry is a walk from the front).
:meth:`forget_client` drops one client's entries; a shred calls it before it destroys anything,
so a shredded client's material never outlives the shred in this cache.
Python cannot promise the bytes are overwritten when dropped (docs/sla.md section 6, "Memory").
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

#: default lifetime: the TOTP step-up window (15 minutes), so an idle service holds nothing longer
DEFAULT_TTL_SECONDS = 900.0
DEFAULT_MAX_ENTRIES = 4096


class BoundedCache:
    """Keys are tuples whose first element is the client id."""

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        if ttl_seconds < 0 or max_entries < 0:
            raise ValueError("ttl_seconds and max_entries must not be negative")
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[tuple, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()
        #: called with the client id after :meth:`forget_client` (the service's other processes)
        self.on_forget: Callable[[str], None] | None = None

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._monotonic())
            return len(self._entries)

    def get(self, key: tuple[Hashable, ...]):
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: tuple[Hashable, ...], value) -> None:
        if self.ttl_seconds == 0 or self.max_entries == 0:
            return
        now = self._monotonic()
        with self._lock:
            self._entries[key] = (now + self.ttl_seconds, value)
            self._entries.move_to_end(key)
            self._expire(now)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget_client(self, client_id: str, *, share: bool = True) -> int:
        """Drop every entry of ``client_id``; returns how many were dropped. ``share``: also tell
        :attr:`on_forget` (``cvault serve --workers N``: every other process drops its copies,
        before this returns)."""
        with self._lock:
            keys = [k for k in self._entries if k and k[0] == client_id]
            for k in keys:
                del self._entries[k]
        if share and self.on_forget is not None:
            self.on_forget(client_id)
        return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _expire(self, now: float) -> None:
        while self._entries:
            key, (deadline, _) = next(iter(self._entries.items()))
            if deadline > now:
                return
            del self._entries[key]
