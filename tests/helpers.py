"""Shared test helpers: real vault folders, real CLI subprocesses, injected clocks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vault.clock import UTC, FixedClock
from vault.facade import Vault
from vault.principal import Principal

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


@dataclass
class VaultDir:
    """A vault folder on disk with its key file, usable from the library and the CLI."""

    home: Path
    key_file: Path

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
        env.update({"CVAULT_HOME": str(self.home), "CVAULT_KEY_FILE": str(self.key_file),
                    "PYTHONPATH": str(ROOT), **extra})
        return env

    def cli(self, *args: str, input: str | bytes | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``cvault ARGS`` in a subprocess, exactly as a user would."""
        return run_cli(*args, input=input, env=env or self.env(), timeout=timeout)

    def open(self, clock=None) -> Vault:
        v = Vault.open(self.home, clock=clock)
        v.unseal_key_file(self.key_file)
        return v


def run_cli(*args: str, input: str | bytes | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], input=input, env=env,
                          capture_output=True, text=text, timeout=timeout, cwd=ROOT)


def make_vault(base: Path, clock=None) -> VaultDir:
    home, key = base / "vault", base / "vault.key"
    v, _ = Vault.init(home, key_file=key, clock=clock)
    v.close()
    return VaultDir(home, key)


def copy_vault(template: VaultDir, base: Path) -> VaultDir:
    home, key = base / "vault", base / "vault.key"
    shutil.copytree(template.home, home)
    shutil.copy2(template.key_file, key)
    return VaultDir(home, key)


def operator() -> Principal:
    return Principal.operator()


def clock_at(when: datetime = T0) -> FixedClock:
    return FixedClock(when)


def add_client(vault: Vault, name: str = "acme", days: int = 365, grace_days: int | None = None,
               principal: Principal | None = None):
    return vault.clients.add(principal or operator(), name,
                             sla_end=vault.ctx.now() + timedelta(days=days), grace_days=grace_days)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def grep_tree(folder: Path, needle: bytes) -> list[Path]:
    """Every file under ``folder`` whose bytes contain ``needle``."""
    return [p for p in files_under(folder) if needle in p.read_bytes()]
