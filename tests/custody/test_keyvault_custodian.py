"""Azure Key Vault / Managed HSM custody against the fake (tests/fakes/keyvault.py) over HTTPS,
with real msal tokens from the fake Entra authority.

Replayed here: Key Vault's 401 challenge (and refusing a challenge that names another resource or
tenant, so no token goes astray), per-client keys and their versions, RSA-OAEP-256 and A256KW
wrapping, delete + purge with the asynchronous delete, purge protection (the receipt gives the
scheduled purge date, and the key really can be recovered until then), throttling with
Retry-After, an expired token, the vault down (exit 9, nothing changed), tampered references.
"""

from __future__ import annotations

import pytest

from tests.custody.conftest import KV_T0, VAULT_ID
from vault import crypto
from vault.custody.base import CustodyDestroyed, CustodyRef, CustodyRefused, CustodyUnavailable
from vault.custody.keyvault import parse_challenge
from vault.custody.keyvault_config import KeyVaultCustodyConfig
from vault.errors import IntegrityFailure, InvalidInput

C1 = "c1" * 16
C2 = "c2" * 16


def test_challenge_first_then_token_then_request(fake_keyvault, kv_custodian, kv_authority):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    first = fake_keyvault.log[0]
    # the first request goes without a token and without a body (the body may carry a secret)
    assert first.has_authorization is False and first.has_body is False and first.status == 401
    assert all(r.has_authorization for r in fake_keyvault.log[1:])
    grants = kv_authority.token_requests("client_credentials")
    assert len(grants) == 1
    name = f"cvault-{VAULT_ID.hex()[:8]}-{C1}-1"
    assert name in fake_keyvault.keys
    stored = fake_keyvault.keys[name]
    assert stored.latest.kty == "RSA" and stored.latest.key_ops == ["wrapKey", "unwrapKey"]
    assert stored.tags == {"cvault": "custody", "vault": VAULT_ID.hex(), "client": C1, "custody_version": "1"}
    assert made.ref.key_id == f"{fake_keyvault.vault_url}/keys/{name}/{stored.latest.version}"
    assert made.ref.wrapped and made.secret not in made.ref.wrapped
    assert custodian.open(made.ref) == made.secret
    # a second object (another CLI process) opens it too: S lives only behind the Key Vault key
    assert kv_custodian(fake_keyvault).open(made.ref) == made.secret


def test_default_key_is_rsa_3072_with_rsa_oaep_256(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault, key_size=0)
    made = custodian.create([(C1, 1)])[0]
    key = next(iter(fake_keyvault.keys.values())).latest
    assert key.key_size == 3072 and custodian.config.wrap_algorithm == "RSA-OAEP-256"
    assert len(made.ref.wrapped) == 3072 // 8


def test_managed_hsm_wraps_with_aes_key_wrap(fake_hsm, kv_custodian):
    custodian = kv_custodian(fake_hsm)
    assert custodian.config.effective_key_type == "oct-HSM" and custodian.config.wrap_algorithm == "A256KW"
    made = custodian.create([(C1, 1)])[0]
    assert len(made.ref.wrapped) == 40  # RFC 3394: 32 bytes + the 8-byte integrity block
    assert custodian.open(made.ref) == made.secret


def test_create_after_a_crash_reuses_the_key(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault)
    first = custodian.create([(C1, 1)])[0]
    again = custodian.create([(C1, 1)])[0]  # the job rerun: same key, a fresh S
    assert len(fake_keyvault.keys) == 1 and len(next(iter(fake_keyvault.keys.values())).versions) == 1
    assert again.secret != first.secret
    assert custodian.open(first.ref) == first.secret and custodian.open(again.ref) == again.secret


def test_a_challenge_for_another_resource_gets_no_token(fake_hsm, kv_custodian, kv_authority):
    # configured for Key Vault's resource, but the server asks for Managed HSM's
    custodian = kv_custodian(fake_hsm, resource="https://vault.azure.net", service="managed-hsm")
    with pytest.raises(CustodyRefused, match="asks for a token for 'https://managedhsm.azure.net'") as exc:
        custodian.create([(C1, 1)])
    assert exc.value.exit_code == 9
    assert kv_authority.token_requests() == []
    assert not any(r.has_authorization for r in fake_hsm.log)


def test_a_challenge_from_another_tenant_is_refused(fake_keyvault, kv_custodian, kv_authority):
    fake_keyvault.tenant = "11111111-2222-3333-4444-555555555555"
    with pytest.raises(CustodyRefused, match="belongs to tenant 11111111-2222"):
        kv_custodian(fake_keyvault).create([(C1, 1)])
    assert kv_authority.token_requests() == []


def test_a_graph_token_is_not_a_key_vault_token(fake_keyvault, token_registry, test_ca):
    """The fake checks the audience as Key Vault does (so the tests above mean something)."""
    import requests

    token = token_registry.issue(scope="https://graph.microsoft.com/.default")
    resp = requests.get(
        f"{fake_keyvault.vault_url}/keys/x/",
        params={"api-version": "7.4"},
        headers={"Authorization": f"Bearer {token}"},
        verify=str(test_ca.ca_path),
        timeout=10,
    )
    assert resp.status_code == 401 and "audience" in resp.json()["error"]["message"]
    challenge = parse_challenge(resp.headers["WWW-Authenticate"])
    assert challenge["resource"] == "https://vault.azure.net"
    assert challenge["authorization"].endswith("/72f988bf-86f1-41af-91ab-2d7cd011db47")


def test_throttling_honours_retry_after(fake_keyvault, kv_custodian, recording_sleep):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    fake_keyvault.throttle(2, retry_after="7")
    assert custodian.open(made.ref) == made.secret
    assert recording_sleep.calls.count(7.0) == 2
    assert [r.status for r in fake_keyvault.requests("POST", "unwrapkey")][-3:] == [429, 429, 200]


def test_a_retry_after_beyond_the_cap_fails_now_as_unavailable(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    fake_keyvault.throttle(1, retry_after="3600")
    with pytest.raises(CustodyUnavailable, match="throttled") as exc:
        custodian.open(made.ref)
    assert exc.value.exit_code == 9


@pytest.mark.parametrize("mode", ["refuse", "503"])
def test_key_vault_down_is_exit_9_and_one_line(fake_keyvault, kv_custodian, mode):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    fake_keyvault.down = mode
    with pytest.raises(CustodyUnavailable) as exc:
        custodian.open(made.ref)
    message = str(exc.value)
    assert exc.value.exit_code == 9 and "\n" not in message
    assert fake_keyvault.vault_url in message
    with pytest.raises(CustodyUnavailable):
        custodian.create([(C2, 1)])
    fake_keyvault.down = None
    assert custodian.open(made.ref) == made.secret  # nothing was lost meanwhile
    assert not any(C2 in n for n in fake_keyvault.keys)


def test_an_expired_token_is_refreshed_once(fake_keyvault, kv_custodian, kv_authority, token_registry):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    token_registry.revoke_all()
    assert custodian.open(made.ref) == made.secret
    assert len(kv_authority.token_requests("client_credentials")) == 2


def test_destroy_deletes_and_purges(fake_keyvault, kv_custodian, kv_clock):
    custodian = kv_custodian(fake_keyvault)
    made, other = custodian.create([(C1, 1), (C2, 1)])
    name = custodian.key_name(C1, 1)
    receipts = custodian.destroy(C1, [1])
    assert [r.version for r in receipts] == [1]
    r = receipts[0]
    assert r.permanent_at == r.destroyed_at == int(KV_T0.timestamp()) and not r.already_absent
    assert "deleted and purged" in r.what and name in r.what
    assert fake_keyvault.purged == [(name, "purge")]
    assert name not in fake_keyvault.keys and name not in fake_keyvault.deleted
    methods = [(q.method, q.path) for q in fake_keyvault.log if name in q.path and q.has_authorization]
    assert ("DELETE", f"/keys/{name}") in methods and ("DELETE", f"/deletedkeys/{name}") in methods
    assert any("Backup Key" in line for line in r.residual)
    with pytest.raises(CustodyDestroyed, match="no longer exists") as exc:
        custodian.open(made.ref)
    assert exc.value.exit_code == 6
    assert custodian.open(other.ref) == other.secret  # other clients untouched
    again = custodian.destroy(C1, [1])[0]
    assert again.already_absent


def test_destroy_waits_out_the_asynchronous_delete(fake_keyvault, kv_custodian, recording_sleep):
    custodian = kv_custodian(fake_keyvault)
    custodian.create([(C1, 1)])
    fake_keyvault.deletion_lag = 3
    receipt = custodian.destroy(C1, [1])[0]
    assert receipt.permanent_at == receipt.destroyed_at
    purges = [q.status for q in fake_keyvault.requests("DELETE", "/deletedkeys/")]
    assert purges == [409, 409, 409, 204]
    assert len(recording_sleep.calls) >= 3


def test_destroy_resumes_after_a_kill_between_delete_and_purge(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault)
    custodian.create([(C1, 1)])
    name = custodian.key_name(C1, 1)
    custodian.client.delete_key(name)  # the killed run got this far
    receipt = kv_custodian(fake_keyvault).destroy(C1, [1])[0]
    assert receipt.permanent_at is not None and fake_keyvault.purged == [(name, "purge")]


def test_purge_protection_gives_the_scheduled_purge_date(fake_keyvault_protected, kv_custodian, kv_clock):
    fake = fake_keyvault_protected
    custodian = kv_custodian(fake)
    made = custodian.create([(C1, 1)])[0]
    receipt = custodian.destroy(C1, [1])[0]
    scheduled = int(KV_T0.timestamp()) + 90 * 86400
    assert receipt.permanent_at == scheduled
    assert "2026-08-30T09:00:00Z" in receipt.residual[0] and "keys/recover" in receipt.residual[0]
    assert "purge protection" in receipt.residual[0]
    # the recovery level says purging is not allowed: no purge is even attempted
    assert fake.requests("DELETE", "/deletedkeys/") == []
    # the residual is real: recovering the key before that date opens the secret again
    recovered = fake.requests  # keep the fake's log readable in a failure
    name = custodian.key_name(C1, 1)
    fake.deleted[name].pending = 0
    fake.keys[name] = fake.deleted.pop(name).key
    assert custodian.open(made.ref) == made.secret, recovered
    # and after the scheduled date the service purges it for good
    custodian.destroy(C1, [1])
    kv_clock.advance(90 * 86400)
    with pytest.raises(CustodyDestroyed):
        custodian.open(made.ref)
    assert (name, "system") in fake.purged


def test_a_refused_purge_is_reported_with_the_purge_date(fake_keyvault, kv_custodian):
    """Without the keys/purge permission Key Vault answers 403: the receipt says so, precisely."""
    custodian = kv_custodian(fake_keyvault)
    custodian.create([(C1, 1)])
    fake_keyvault.inject(403, 1, method="DELETE", path_contains="/deletedkeys/")
    receipt = custodian.destroy(C1, [1])[0]
    assert receipt.permanent_at == int(KV_T0.timestamp()) + 90 * 86400
    assert "purge refused" in receipt.residual[0] and "HTTP 403" in receipt.residual[0]


def test_a_tampered_wrapped_secret_fails_closed(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    flipped = bytes([made.ref.wrapped[0] ^ 1]) + made.ref.wrapped[1:]
    bad = CustodyRef(C1, 1, made.ref.fingerprint, made.ref.key_id, flipped)
    with pytest.raises(IntegrityFailure) as exc:
        custodian.open(bad)
    assert exc.value.exit_code == 6


def test_a_reference_to_another_key_or_host_is_refused_before_any_request(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1), (C2, 1)])
    before = len(fake_keyvault.log)
    swapped = CustodyRef(C1, 1, made[0].ref.fingerprint, made[1].ref.key_id, made[0].ref.wrapped)
    elsewhere = CustodyRef(
        C1,
        1,
        made[0].ref.fingerprint,
        made[0].ref.key_id.replace("127.0.0.1", "evil.example"),
        made[0].ref.wrapped,
    )
    for ref in (swapped, elsewhere):
        with pytest.raises(IntegrityFailure):
            custodian.open(ref)
    assert len(fake_keyvault.log) == before


def test_a_wrong_fingerprint_fails_closed(fake_keyvault, kv_custodian):
    custodian = kv_custodian(fake_keyvault)
    made = custodian.create([(C1, 1)])[0]
    ref = CustodyRef(C1, 1, crypto.key_fingerprint(b"x" * 32), made.ref.key_id, made.ref.wrapped)
    with pytest.raises(IntegrityFailure, match="does not match"):
        custodian.open(ref)


def test_a_wrong_client_secret_is_exit_9_without_the_secret(fake_keyvault, kv_custodian, tmp_path):
    import os

    bad = tmp_path / "bad-secret"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not-the-secret")
    os.close(fd)
    custodian = kv_custodian(fake_keyvault, secret_file=str(bad))
    with pytest.raises(Exception) as exc:
        custodian.create([(C1, 1)])
    assert getattr(exc.value, "exit_code", None) == 9
    assert "access token for Azure Key Vault" in str(exc.value) and "not-the-secret" not in str(exc.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vault_url": "http://kv.vault.azure.net"}, "vault_url"),
        ({"vault_url": "https://kv.vault.azure.net/keys"}, "vault_url"),
        ({"tenant_id": "not a tenant"}, "tenant_id"),
        ({"client_id": "abc"}, "client_id"),
        ({"credential": "device-code"}, "credential"),
        ({"credential": "secret-file", "secret_file": ""}, "secret_file"),
        ({"key_type": "oct-HSM"}, "oct-HSM"),
        ({"key_size": 1024}, "key_size"),
        ({"key_prefix": "bad_prefix"}, "key_prefix"),
        ({"vault_url": "https://127.0.0.1:8443"}, "service"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"resource": "https://vault.azure.net/x"}, "resource"),
    ],
)
def test_configuration_is_validated(change, field):
    base = dict(
        vault_url="https://contoso-kv.vault.azure.net",
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id="5b1c9a35-2c4c-4f5e-8d8f-0f6f8b1e2a11",
        certificate_file="/etc/cvault/kv.pem",
    )
    base.update(change)
    with pytest.raises(InvalidInput, match=field):
        KeyVaultCustodyConfig(**base).validate()


def test_configuration_derives_resource_and_key_type_from_the_host():
    kv = KeyVaultCustodyConfig(
        vault_url="https://Contoso-KV.vault.azure.cn",
        tenant_id="contoso.partner.onmschina.cn",
        client_id="5b1c9a35-2c4c-4f5e-8d8f-0f6f8b1e2a11",
        certificate_file="/k.pem",
    ).validate()
    assert kv.effective_resource == "https://vault.azure.cn" and kv.scopes == [
        "https://vault.azure.cn/.default"
    ]
    assert (kv.effective_service, kv.effective_key_type, kv.effective_key_size) == ("key-vault", "RSA", 3072)
    hsm = KeyVaultCustodyConfig(
        vault_url="https://contoso.managedhsm.azure.net",
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id="5b1c9a35-2c4c-4f5e-8d8f-0f6f8b1e2a11",
        certificate_file="/k.pem",
    ).validate()
    assert hsm.effective_resource == "https://managedhsm.azure.net"
    assert (hsm.effective_key_type, hsm.wrap_algorithm) == ("oct-HSM", "A256KW")
    assert KeyVaultCustodyConfig.from_dict(hsm.to_dict()) == hsm
    with pytest.raises(InvalidInput, match="unknown field"):
        KeyVaultCustodyConfig.from_dict({**hsm.to_dict(), "client_secret": "x"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer authorization="https://login.windows.net/t", resource="https://vault.azure.net"',
            {"authorization": "https://login.windows.net/t", "resource": "https://vault.azure.net"},
        ),
        (
            'Bearer authorization_uri="https://login.microsoftonline.com/t", scope="https://vault.azure.net/.default"',
            {
                "authorization_uri": "https://login.microsoftonline.com/t",
                "scope": "https://vault.azure.net/.default",
            },
        ),
        ('Basic realm="x"', None),
        ("Bearer", None),
        ('Bearer resource="https://vault.azure.net"', None),
        (None, None),
    ],
)
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected
