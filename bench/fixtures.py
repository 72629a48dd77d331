"""Vaults prepared for benchmarks through the library (fast), then used through the real CLI.

They reuse the test helpers' staff setup: an all-roles ``operator`` user, assigned and trained,
with a live session (and fresh step-up) in a session file, so ``secret get`` runs the same checks
as for any engineer: session, step-up, assignment, training, SLA, audit write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import VaultDir, add_client, make_vault, operator


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


def realistic_vault(base: Path, staff: int = 10, records: int = 100, audit_events: int = 1000) -> BenchVault:
    """A vault with a working history, as issue 20 asks for the secret get target: ``staff``
    people (engineers, an account manager, an admin, a reviewer), ``records`` records of mixed
    kinds with a few versions each, and ``audit_events`` real audit events from real reads."""
    from tests.factories import assign, person

    vault = ready_vault(base, records=0)
    vd = VaultDir(vault.home, vault.key_file)
    v = vd.open()
    try:
        people = [person(v, f"eng{i}", "engineer") for i in range(max(1, staff - 3))]
        person(v, "maria", "account_manager")
        person(v, "ada", "admin")
        person(v, "rita", "security_reviewer")
        for p in people:
            assign(v, p, "acme")
        kinds = [
            (
                "access",
                lambda i: {"host": f"10.1.{i // 250}.{i % 250}", "username": "admin", "password": f"pw-{i}"},
            ),
            ("account", lambda i: {"username": f"svc{i}", "password": f"secret-{i}-xyz"}),
            (
                "network",
                lambda i: {"site": f"site {i}", "wifi_ssid": f"ACME-{i}", "wifi_key": f"wifi-key-{i:04d}"},
            ),
            ("note", lambda i: {"text": f"runbook {i}\nstep 1\nstep 2"}),
        ]
        op = operator()
        for i in range(records):
            kind, fields = kinds[i % len(kinds)]
            path = "rec/0" if i == 0 else f"{kind}/{i}"
            for _version in range(1 + (i % 3 == 0)):  # every third record has two versions
                v.secrets.put(op, "acme", path, kind, fields(i), replace=True)
        readers = [p.principal(v) for p in people]
        done = v.ctx.audit.head()[0]
        i = 0
        while v.ctx.audit.head()[0] < done + audit_events:
            reader = readers[i % len(readers)]
            kind = kinds[i % len(kinds)][0]
            v.secrets.get(reader, "acme", "rec/0" if i % records == 0 else f"{kind}/{i % records}")
            i += 1
    finally:
        v.close()
    return vault
