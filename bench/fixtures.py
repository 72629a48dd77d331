"""Vaults prepared for benchmarks through the library (fast), used through the real CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from vault.facade import Vault
from vault.principal import Principal


@dataclass
class BenchVault:
    home: Path
    key_file: Path
    env: dict = field(default_factory=dict)


def actor():
    return Principal.operator()


def ready_vault(base: Path, records: int = 10) -> BenchVault:
    home, key = base / "vault", base / "vault.key"
    v, _ = Vault.init(home, key_file=key)
    v.clients.add(actor(), "acme", sla_end=v.ctx.now() + timedelta(days=365))
    v.secrets.import_records(actor(), "acme", [
        json.dumps({"path": f"rec/{i}", "kind": "access",
                    "fields": {"host": f"10.0.{i // 250}.{i % 250}", "password": f"pw-{i}"}})
        for i in range(records)])
    v.close()
    return BenchVault(home, key, {"CVAULT_HOME": str(home), "CVAULT_KEY_FILE": str(key)})
