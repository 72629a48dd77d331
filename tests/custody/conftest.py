"""Fixtures of the custody tests: the fake Key Vault / Managed HSM and an Entra authority for them.

``kv_authority`` is the fake Entra ID authority (tests/fakes/authority.py) with a confidential app
registered (client secret), so the custodian gets *real* msal tokens; ``fake_keyvault`` and
``fake_hsm`` are started fakes (tests/fakes/keyvault.py) sharing its token registry;
``kv_config(fake, **overrides)`` builds the custodian configuration pointing at a fake;
``kv_custodian(fake, ...)`` builds the custodian exactly as the product does
(``vault.custody.keyvault.build_custodian``), with the recording sleep and a settable clock.
"""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from tests.fakes.authority import FakeAuthority
from tests.fakes.keyvault import FakeKeyVault
from vault.clock import UTC, FixedClock

KV_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
KV_CLIENT_ID = "5b1c9a35-2c4c-4f5e-8d8f-0f6f8b1e2a11"
KV_SECRET = "kv-app-secret-not-a-real-one"
VAULT_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
KV_T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def kv_clock():
    return FixedClock(KV_T0)


@pytest.fixture
def kv_authority(test_ca, token_registry, monkeypatch):
    from tests.fakes.fixtures import allow_host

    authority = FakeAuthority(test_ca.server_context(), token_registry, tenant=KV_TENANT).start()
    allow_host(monkeypatch, authority.host)
    authority.register(KV_CLIENT_ID, secret=KV_SECRET)
    yield authority
    authority.stop()


def _fake(test_ca, token_registry, kv_authority, kv_clock, **kwargs):
    return FakeKeyVault(
        test_ca.server_context(),
        token_registry,
        tenant=KV_TENANT,
        authority_host=kv_authority.host,
        now=lambda: kv_clock.now().timestamp(),
        **kwargs,
    ).start()


@pytest.fixture
def fake_keyvault(test_ca, token_registry, kv_authority, kv_clock):
    fake = _fake(test_ca, token_registry, kv_authority, kv_clock)
    yield fake
    fake.stop()


@pytest.fixture
def fake_keyvault_protected(test_ca, token_registry, kv_authority, kv_clock):
    """A Key Vault with purge protection on (purge refused; the service purges after 90 days)."""
    fake = _fake(test_ca, token_registry, kv_authority, kv_clock, purge_protection=True)
    yield fake
    fake.stop()


@pytest.fixture
def fake_hsm(test_ca, token_registry, kv_authority, kv_clock):
    fake = _fake(test_ca, token_registry, kv_authority, kv_clock, managed_hsm=True)
    yield fake
    fake.stop()


@pytest.fixture
def kv_secret_file(tmp_path):
    path = tmp_path / "kv-client-secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, KV_SECRET.encode())
    os.close(fd)
    return path


@pytest.fixture
def kv_config(kv_authority, kv_secret_file):
    from vault.custody.keyvault_config import KeyVaultCustodyConfig

    def make(fake: FakeKeyVault, **overrides) -> KeyVaultCustodyConfig:
        fields = dict(
            vault_url=fake.vault_url,
            tenant_id=KV_TENANT,
            client_id=KV_CLIENT_ID,
            credential="secret-file",
            secret_file=str(kv_secret_file),
            authority_host=kv_authority.host,
            instance_discovery=False,
            service="managed-hsm" if fake.managed_hsm else "key-vault",
            resource=fake.resource,
            key_size=2048 if not fake.managed_hsm else 0,
        )
        fields.update(overrides)
        return KeyVaultCustodyConfig(**fields).validate()

    return make


@pytest.fixture
def kv_custodian(kv_config, test_ca, recording_sleep, kv_clock):
    from vault.custody.keyvault import build_custodian

    made = []

    def make(fake: FakeKeyVault, **overrides):
        custodian = build_custodian(
            kv_config(fake, **overrides),
            VAULT_ID,
            clock=kv_clock,
            verify=str(test_ca.ca_path),
            sleep=recording_sleep,
        )
        made.append(custodian)
        return custodian

    yield make
    for custodian in made:
        custodian.close()
