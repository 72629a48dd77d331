"""Runs :mod:`tests.backends.backend_conformance` against every backend: memory, local and OneDrive (the
fake Graph over HTTPS)."""

from __future__ import annotations

import pytest

from tests.backends.backend_conformance import BackendConformance
from vault.backends.local import LocalBackend
from vault.backends.memory import MemoryBackend


@pytest.fixture(params=["memory", "local", "onedrive"])
def backend(request, tmp_path):
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "local":
        return LocalBackend(tmp_path / "blobs")
    return request.getfixturevalue("onedrive_backend")


class TestBackendConformance(BackendConformance):
    pass
