"""The file-writer cast (issue 12): see tests/integrity/test_file_writer.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import assign, person
from tests.helpers import make_vault


@pytest.fixture(scope="session")
def world_template(tmp_path_factory):
    vdir = make_vault(tmp_path_factory.mktemp("filewriter"), with_operator=False)
    v = vdir.open()
    try:
        people = {
            "maria": person(v, "maria", "account_manager"),
            "eve": person(v, "eve", "engineer"),
            "carl": person(v, "carl", "engineer"),
            "rita": person(v, "rita", "security_reviewer"),
            "ada": person(v, "ada", "admin"),
        }
        maria = people["maria"].principal(v)
        v.clients.add(maria, "acme", sla_end=v.ctx.now() + timedelta(days=365))
        v.clients.add(maria, "globex", sla_end=v.ctx.now() + timedelta(days=365))
        assign(v, people["eve"], "acme")
        v.teams.add(maria, "acme-ops")  # a team assigned to acme, nobody in it yet
        v.teams.assign(maria, "acme", "acme-ops")
        assign(v, people["carl"], "globex")
        eve = people["eve"].principal(v)
        v.secrets.put(eve, "acme", "office/firewall", "note", {"text": "pw-old-1"})
        v.secrets.put(eve, "acme", "office/firewall", "note", {"text": "pw-current-2"})
        v.secrets.put(eve, "acme", "office/gone", "note", {"text": "deleted-value"})
        v.secrets.rm(eve, "acme", "office/gone")
        v.secrets.put(people["carl"].principal(v), "globex", "net/core", "note", {"text": "globex-core"})
        # PSA integrations (docs/sla.md): halopsa and connectwise sign contract events; oldpsa was
        # removed (its secret destroyed). The secrets are what a PSA holds, not the attacker
        ada = people["ada"].principal(v)
        integration_secrets = {n: v.integrations.add(ada, n)["secret"] for n in ("halopsa", "connectwise")}
        v.integrations.add(ada, "oldpsa")
        v.integrations.rm(ada, "oldpsa")
        ids = {name: p.user_id for name, p in people.items()}
        ids["integration_secrets"] = integration_secrets
        ids["vault_id"] = v.ctx.vault_id.hex()
    finally:
        v.close()
    return vdir, people, ids
