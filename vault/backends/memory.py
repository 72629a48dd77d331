"""In-memory backend for tests; keeps the full contract of :mod:`vault.backends.base`."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from vault.backends.base import validate_blob_name
from vault.errors import BlobNotFound


class MemoryBackend:
    location = "memory"

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes) -> None:
        validate_blob_name(name)
        with self._lock:
            self._blobs[name] = bytes(data)

    def get(self, name: str) -> bytes:
        validate_blob_name(name)
        with self._lock:
            try:
                return self._blobs[name]
            except KeyError:
                raise BlobNotFound(f"blob {name} not found in {self.location}") from None

    def delete(self, name: str) -> None:
        validate_blob_name(name)
        with self._lock:
            self._blobs.pop(name, None)

    def list(self) -> Iterator[str]:
        with self._lock:
            names = list(self._blobs)
        return iter(names)

    def exists(self, name: str) -> bool:
        validate_blob_name(name)
        with self._lock:
            return name in self._blobs
