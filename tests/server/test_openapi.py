"""The OpenAPI document (issue 15 item 1): valid OpenAPI 3.1, a bearer security scheme, ``security``
on every operation (the session token where the registry says ``auth``, none elsewhere), and a
response schema for every 200 that the real answers of a running service actually match."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.factories import assign, person
from tests.helpers import make_vault
from tests.server.harness import start_service
from vault import api_spec as spec


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    from vault.server.app import ServiceSettings, create_app
    from vault.server.pool import VaultPool

    vdir = make_vault(tmp_path_factory.mktemp("openapi"), with_operator=False)
    pool = VaultPool(vdir.home)
    try:
        yield create_app(pool, ServiceSettings(background=False)).openapi()
    finally:
        pool.close()


def test_the_document_is_valid_openapi(document):
    validate(document)  # raises OpenAPIValidationError with the first problem
    assert document["openapi"].startswith("3.1")


def test_security_and_a_200_schema_on_every_operation(document):
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    by_id = {o["operationId"]: o for path in document["paths"].values() for o in path.values()}
    for op in spec.OPERATIONS:
        entry = by_id[op.operation_id]
        assert entry["security"] == ([{"bearer": []}] if op.auth else []), op.name
        schema = entry["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema, op.name
    for path in ("/v1/health", "/v1/sys/unseal"):
        (entry,) = document["paths"][path].values()
        assert entry["security"] == [] and "200" in entry["responses"]


def _validator(document, op: spec.Op) -> Draft202012Validator:
    """The 200 schema of ``op`` inside the document, so that its ``$ref``s resolve there."""
    base = "urn:cvault:openapi"
    registry = Registry().with_resource(
        base, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    pointer = "/".join(("paths", op.path.replace("/", "~1"), "post", "responses", "200", "content"))
    return Draft202012Validator({"$ref": f"{base}#/{pointer}/application~1json/schema"}, registry=registry)


def test_every_operation_answers_in_its_declared_schema(tmp_path, remote_config, document):
    """Each registry operation once, with valid arguments, through a real service on loopback;
    every 200 body is validated against the document's schema for it."""
    vdir = make_vault(tmp_path / "world", with_operator=False)
    v = vdir.open()
    ada = person(v, "ada", "admin")
    alan = person(v, "alan", "admin")
    abe = person(v, "abe", "admin")  # a third admin: ada and alan made nina, so neither grants her roles
    maria = person(v, "maria", "account_manager")
    eve = person(v, "eve", "engineer")
    lena = person(v, "lena", "engineer", real_password=True)
    rita = person(v, "rita", "security_reviewer")
    v.sync.configure(v.users.resume(ada.token(v)), remote_config)  # on the host, as `remote set` does
    v.clients.add(v.users.resume(maria.token(v)), "acme", sla_end=v.ctx.now() + timedelta(days=365))
    assign(v, eve, "acme")
    tokens = {p.name: p.token(v) for p in (ada, alan, abe, maria, eve, rita)}
    v.close()
    service = start_service(vdir, tmp_path / "service")
    seen: set[str] = set()
    try:

        def call(who: str | None, name: str, body: dict | None = None, token: str | None = None):
            op = spec.BY_NAME[name]
            status, answer = service.client(token or (tokens[who] if who else None)).post(op.path, body)
            assert status == 200, (name, status, answer)
            errors = sorted(_validator(document, op).iter_errors(answer), key=str)
            assert not errors, (name, [e.message for e in errors[:3]], answer)
            seen.add(name)
            return answer

        # sessions and the first factor
        call(None, "audit.public_key")
        login = call(None, "users.login", {"name": "lena", "password": lena.password, "totp": lena.code()})
        call(None, "users.whoami", token=login["token"])
        call(
            None, "users.passwd", {"current": lena.password, "new": "another long password 7"}, login["token"]
        )
        call("eve", "users.step_up", {"code": eve.code()})
        call("eve", "users.whoami")
        # administration
        added = call("ada", "users.add", {"name": "nina", "roles": ["engineer"]})
        assert added["state"] == "pending_approval"
        approved = call("alan", "users.approve", {"name": "nina"})
        call(
            None,
            "users.enroll",
            {"name": "nina", "code": approved["enrollment_code"], "password": "nina's password 1"},
        )
        call("ada", "users.list")
        call("ada", "users.show", {"name": "nina"})
        call("abe", "users.grant", {"name": "nina", "role": "security_reviewer"})
        call("ada", "users.revoke", {"name": "nina", "role": "security_reviewer"})
        call("ada", "users.disable", {"name": "nina"})
        call("ada", "users.enable", {"name": "nina"})
        call("ada", "users.unlock", {"name": "nina"})
        call("ada", "users.reset_totp", {"name": "nina"})
        call("ada", "users.reset", {"name": "nina"})
        status, _ = service.client(tokens["ada"]).post(spec.BY_NAME["users.approve"].path, {"name": "nina"})
        assert status == 403  # the requester of the reset cannot approve it
        call("alan", "users.approve", {"name": "nina"})
        call("maria", "users.confirm", {"name": "nina"})
        call("ada", "users.train", {"name": "eve", "until": "+365d"})
        # clients, assignments and who can read what
        call("maria", "clients.add", {"name": "globex", "sla_end": "+400d", "grace_days": 30})
        call("maria", "clients.list")
        call("maria", "clients.show", {"name": "acme"})
        call("maria", "access.assign", {"client_name": "globex", "user_name": "eve", "until": "+30d"})
        call("maria", "access.unassign", {"client_name": "globex", "user_name": "eve"})
        call("rita", "access.client_access", {"client_name": "acme"})
        call("rita", "access.user_access", {"user_name": "eve"})
        # teams
        call("maria", "teams.add", {"name": "noc", "description": "network operations"})
        call("maria", "teams.member_add", {"team": "noc", "user_name": "eve"})
        call("maria", "teams.assign", {"client_name": "globex", "team": "noc", "until": "+30d"})
        call("rita", "teams.list")
        call("rita", "teams.show", {"name": "noc"})
        call("ada", "teams.memberships", {"user_name": "eve"})
        call("rita", "access.client_access", {"client_name": "globex"})
        call("maria", "teams.unassign", {"client_name": "globex", "team": "noc"})
        call("maria", "teams.member_rm", {"team": "noc", "user_name": "eve"})
        call("maria", "teams.rm", {"name": "noc"})
        # secrets
        record = {
            "client_name": "acme",
            "path": "office/fw",
            "kind": "access",
            "fields": {"password": "pw-1"},
        }
        call("eve", "secrets.put", record)
        call("eve", "secrets.get", {"client_name": "acme", "path": "office/fw"})
        call("eve", "secrets.list", {"client_name": "acme"})
        call("eve", "secrets.history", {"client_name": "acme", "path": "office/fw"})
        edit = {"client_name": "acme", "path": "office/fw", "set_fields": {"host": "fw.acme"}, "unset": []}
        call("eve", "secrets.edit", edit)
        call("eve", "secrets.restore", {"client_name": "acme", "path": "office/fw", "version": 1})
        call("eve", "secrets.search", {"term": "office"})
        call("eve", "secrets.list_all")
        totp = {"username": "admin", "totp": "JBSWY3DPEHPK3PXPJBSWY3DP"}
        call("eve", "secrets.put", {"client_name": "acme", "path": "m/a", "kind": "account", "fields": totp})
        call("eve", "secrets.otp", {"client_name": "acme", "path": "m/a"})
        attach = {"client_name": "acme", "path": "m/a", "name": "n.txt", "data": "aGVsbG8="}
        call("eve", "secrets.attach", attach)
        call("eve", "secrets.attachment", {"client_name": "acme", "path": "m/a", "name": "n.txt"})
        call("eve", "secrets.detach", {"client_name": "acme", "path": "m/a", "name": "n.txt"})
        lines = ['{"path": "a/b", "kind": "note", "fields": {"text": "t"}}']
        call("eve", "secrets.import_records", {"client_name": "acme", "lines": lines})
        call("eve", "secrets.export_records", {"client_name": "acme"})
        call("eve", "secrets.rm", {"client_name": "acme", "path": "a/b"})
        call("maria", "clients.rotate_key", {"name": "acme"})
        # the replica (the fake Graph over HTTPS)
        call("ada", "sync.status")
        call("ada", "sync.show_config")
        call("ada", "sync.push", {})
        call("ada", "sync.pull", {})
        call("ada", "sync.verify")
        # SLA: a renewal, an early shred by two people, the sweep, the certificate
        call("maria", "sla.show", {"name": "acme"})
        call("maria", "sla.renew", {"name": "acme", "until": "+500d"})
        call("maria", "sla.upcoming", {"within": "1000d"})
        call("maria", "sla.overview", {"engineer": "eve", "sort": "days_left", "limit": 10})
        contracts = ["client,contract_end", "acme,+600d", "initech,+30d"]
        call("maria", "contracts.import_contracts", {"lines": contracts, "dry_run": True})
        call("maria", "contracts.import_contracts", {"lines": contracts})
        call("ada", "integrations.add", {"name": "halopsa"})
        call("rita", "integrations.list")
        call("ada", "integrations.rm", {"name": "halopsa"})
        call("maria", "sla.expire", {"name": "globex", "reason": "contract ended"})
        call("maria", "sla.request_shred", {"name": "globex", "reason": "client asked for erasure"})
        call("maria", "sla.requests")
        call("ada", "sla.approve_shred", {"name": "globex"})
        call("maria", "sla.sweep", {})
        call("maria", "sla.certificate", {"name": "globex"})
        # the minimum grace period: requested by one, approved by another (issue 11)
        call("maria", "sla.request_min_grace", {"days": 45})
        call("maria", "sla.min_grace")
        call("ada", "sla.approve_min_grace", {"days": 45})
        # the reviewer's tools
        call("rita", "audit.checkpoint")
        call("rita", "audit.log", {"limit": 5})
        call("rita", "audit.log", {"limit": 5, "before": 10, "outcome": "ok"})
        call("rita", "audit.export_lines", {"format": "jsonl"})
        call("rita", "audit.verify", {})
        call("rita", "audit.report", {"since": "30d"})
        call("rita", "audit.prune", {"before": "2000-01-01"})
        # an integrity alarm (the newest checkpoint deleted from the file), acknowledged by an admin
        import sqlite3

        db = sqlite3.connect(vdir.home / "vault.db", isolation_level=None)
        newest = db.execute("SELECT id, seq FROM audit_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        db.execute("DELETE FROM audit_checkpoints WHERE id = ?", (newest[0],))
        db.close()
        call("ada", "audit.recover", {"acknowledge": max(newest[1], 1)})
        call("eve", "users.logout")
        call("maria", "users.logout_all")
    finally:
        service.stop()
    assert seen == set(spec.BY_NAME), set(spec.BY_NAME) - seen
