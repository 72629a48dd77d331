"""Vaults prepared for benchmarks through the library (fast), then used through the real CLI.

They reuse the test helpers' staff setup: an all-roles ``operator`` user, assigned and trained,
with a live session (and fresh step-up) in a session file, so ``secret get`` runs the same checks
as for any engineer: session, step-up, assignment, training, SLA, audit write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import add_client, make_vault, operator


@dataclass
class BenchVault:
    home: Path
    key_file: Path
    env: dict = field(default_factory=dict)


def ready_vault(base: Path, records: int = 10, clients: int = 1) -> BenchVault:
    vd = make_vault(base)
    v = vd.open()
    for c in range(clients):
        name = "acme" if c == 0 else f"client-{c}"
        add_client(v, name)
        if c == 0 and records:
            v.secrets.import_records(
                operator(),
                name,
                [
                    json.dumps(
                        {
                            "path": f"rec/{i}",
                            "kind": "access",
                            "fields": {"host": f"10.0.{i // 250}.{i % 250}", "password": f"pw-{i}"},
                        }
                    )
                    for i in range(records)
                ],
            )
    v.close()
    env = vd.env()
    return BenchVault(vd.home, vd.key_file, {k: env[k] for k in env if k.startswith("CVAULT_")})
