"""The one conformance suite every storage backend runs (docs/spec.md §8; restic's backend tests).

Subclass :class:`BackendConformance` in a test module that provides a ``backend`` fixture
returning an empty backend; every test here then runs against it. Each test checks one sentence of
the contract in :mod:`vault.backends.base`.
"""

from __future__ import annotations

import random
import threading

import pytest

from vault.backends.base import Backend
from vault.errors import BackendError, BlobNotFound, InvalidInput

BAD_NAMES = ["", "A", "UPPER", "-lead", "_lead", "a/b", "a b", "a.b", "a:b", "con*", "x" * 129, "é"]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


class BackendConformance:
    def test_is_a_backend_with_a_location(self, backend):
        assert isinstance(backend, Backend)
        assert isinstance(backend.location, str) and backend.location

    def test_starts_empty(self, backend):
        assert list(backend.list()) == []

    @pytest.mark.parametrize("size", [0, 1, 1000, 70_000])
    def test_put_get_round_trip(self, backend, size):
        data = payload(size, size)
        backend.put(f"rt{size}", data)
        got = backend.get(f"rt{size}")
        assert isinstance(got, bytes) and got == data

    def test_put_replaces(self, backend):
        backend.put("ab1", b"old content, longer")
        backend.put("ab1", b"new")
        assert backend.get("ab1") == b"new"
        assert sorted(backend.list()) == ["ab1"]

    def test_put_accepts_bytearray_and_memoryview(self, backend):
        backend.put("ba1", bytearray(b"ba"))
        backend.put("mv1", memoryview(b"mv"))
        assert backend.get("ba1") == b"ba" and backend.get("mv1") == b"mv"

    def test_get_missing_raises_blob_not_found(self, backend):
        with pytest.raises(BlobNotFound):
            backend.get("missing0")

    def test_exists(self, backend):
        assert backend.exists("ex1") is False
        backend.put("ex1", b"x")
        assert backend.exists("ex1") is True
        backend.delete("ex1")
        assert backend.exists("ex1") is False

    def test_delete_removes_and_is_idempotent(self, backend):
        backend.put("del1", b"x")
        backend.put("del2", b"y")
        backend.delete("del1")
        backend.delete("del1")
        backend.delete("never-there")
        with pytest.raises(BlobNotFound):
            backend.get("del1")
        assert sorted(backend.list()) == ["del2"]

    def test_list_returns_every_name_once(self, backend):
        names = {f"{c}{i}" for c in "0a9z" for i in range(4)} | {"a" * 128, "b-c_d"}
        for name in names:
            backend.put(name, name.encode())
        listed = list(backend.list())
        assert len(listed) == len(set(listed))
        assert set(listed) == names

    def test_names_are_validated(self, backend):
        for name in BAD_NAMES:
            for call in (
                lambda name=name: backend.put(name, b"x"),
                lambda name=name: backend.get(name),
                lambda name=name: backend.delete(name),
                lambda name=name: backend.exists(name),
            ):
                with pytest.raises(InvalidInput):
                    call()
        assert list(backend.list()) == []

    def test_errors_are_backend_errors(self, backend):
        """What this backend raises for a missing blob is a BlobNotFound, hence a BackendError."""
        with pytest.raises(BlobNotFound) as missing:
            backend.get("never-stored")
        assert isinstance(missing.value, BackendError)
        assert "never-stored" not in backend.list()

    def test_concurrent_puts_of_distinct_names(self, backend):
        errors = []

        def worker(k: int) -> None:
            try:
                for i in range(5):
                    backend.put(f"t{k}n{i}", payload(100, k * 10 + i))
            except BackendError as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert sorted(backend.list()) == sorted(f"t{k}n{i}" for k in range(4) for i in range(5))
        assert backend.get("t3n4") == payload(100, 34)
