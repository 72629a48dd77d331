"""Shared fixtures. Vaults are real folders with a real SQLite file; the CLI runs in subprocesses."""

from __future__ import annotations

import pytest

from tests.helpers import VaultDir, copy_vault, make_vault


@pytest.fixture(scope="session")
def vault_template(tmp_path_factory) -> VaultDir:
    """One initialised vault per test session; tests get a private copy (init costs Argon2 time)."""
    return make_vault(tmp_path_factory.mktemp("template"))


@pytest.fixture
def vdir(vault_template, tmp_path) -> VaultDir:
    """A fresh private copy of the template vault (home + key file)."""
    return copy_vault(vault_template, tmp_path)
