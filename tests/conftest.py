"""Shared fixtures. Vaults are real folders with a real SQLite file; the CLI runs in subprocesses."""

from __future__ import annotations

import os

import pytest

from tests.fakes.fixtures import *  # noqa: F403 - fake Graph and authority (tests/fakes)
from tests.helpers import (
    Staff,
    VaultDir,
    copy_staff,
    copy_vault,
    make_staff_vault,
    make_vault,
)

# pytest-xdist's workers export COLUMNS=80; the CLI fits its tables to COLUMNS (docs/cli.md), so
# a CLI subprocess would wrap differently under -n than without it. Tests that want a width set
# COLUMNS themselves (tests/cli/test_human_output.py).
os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session")
def vault_template(tmp_path_factory) -> VaultDir:
    """One initialised vault per test session; tests get a private copy (init costs Argon2 time)."""
    return make_vault(tmp_path_factory.mktemp("template"))


@pytest.fixture
def vdir(vault_template, tmp_path) -> VaultDir:
    """A fresh private copy of the template vault (home + key file)."""
    return copy_vault(vault_template, tmp_path)


@pytest.fixture(scope="session")
def staff_template(tmp_path_factory) -> Staff:
    """One identity vault per test session (default settings, created at T0): alice (admin),
    amy (account_manager), bob (engineer, assigned to acme, trained), carl (engineer, trained, not
    assigned), rita (security_reviewer); known passwords and TOTP secrets (tests.helpers)."""
    return make_staff_vault(tmp_path_factory.mktemp("staff"))


@pytest.fixture
def staff(staff_template, tmp_path) -> Staff:
    """A private copy of the identity vault; open it with ``staff.vdir.open(clock=clock_at())``."""
    return copy_staff(staff_template, tmp_path)
