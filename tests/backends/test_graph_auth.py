"""Real msal against the fake Entra authority over HTTPS; sealed token cache; config validation."""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from vault import crypto
from vault.backends.graph_auth import (
    ClientCredentialsProvider,
    DeviceCodeProvider,
    SealedTokenCache,
    TokenAcquisitionError,
    provider_from_config,
)
from vault.backends.onedrive import OneDriveBackend
from vault.backends.onedrive_config import OneDriveConfig
from vault.errors import InvalidInput, PermanentBackendError, TransientBackendError

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "s3cr3t~value-never-logged"
CACHE_AAD = b"cvault/v1/token-cache-seal"


@pytest.fixture
def authority(test_ca, token_registry, monkeypatch):
    from tests.fakes.authority import FakeAuthority
    from tests.fakes.fixtures import allow_host

    a = FakeAuthority(test_ca.server_context(), token_registry, tenant=TENANT, device_interval=1).start()
    allow_host(monkeypatch, a.host)  # this host allows the loopback authority (review4 R4-4)
    yield a
    a.stop()


@pytest.fixture
def sealed_cache(tmp_path):
    key = crypto.new_key()
    return SealedTokenCache(
        tmp_path / "cache" / "graph-token-cache.bin",
        lambda b: crypto.seal(key, b, CACHE_AAD),
        lambda b: crypto.unseal(key, b, CACHE_AAD),
    )


def secret_provider(authority, test_ca, cache=None, secret=SECRET):
    return ClientCredentialsProvider(
        TENANT,
        CLIENT_ID,
        client_secret=secret,
        authority_host=authority.host,
        cache=cache,
        instance_discovery=False,
        verify=str(test_ca.ca_path),
    )


def test_client_secret_gets_a_real_token_and_caches_it(authority, test_ca, token_registry, sealed_cache):
    authority.register(CLIENT_ID, secret=SECRET)
    provider = secret_provider(authority, test_ca, sealed_cache)
    token = provider.token()
    assert token_registry.valid(token)
    assert provider.token() == token  # from msal's cache, no second request
    assert len(authority.token_requests("client_credentials")) == 1
    fresh = provider.token(force_refresh=True)
    assert fresh != token and token_registry.valid(fresh)
    assert len(authority.token_requests("client_credentials")) == 2
    # the sealed cache: 0600, no token in clear, and it unseals to msal's JSON
    path = sealed_cache.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert token.encode() not in raw and fresh.encode() not in raw and b"access_token" not in raw.lower()
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp file left


def test_cache_is_written_only_when_changed(authority, test_ca, sealed_cache):
    authority.register(CLIENT_ID, secret=SECRET)
    provider = secret_provider(authority, test_ca, sealed_cache)
    provider.token()
    mtime = sealed_cache.path.stat().st_mtime_ns
    os.utime(sealed_cache.path, ns=(1, 1))
    provider.token()  # served from cache: no state change, no write
    assert sealed_cache.path.stat().st_mtime_ns == 1
    assert mtime != 1


def test_wrong_secret_is_one_line_without_the_secret(authority, test_ca):
    authority.register(CLIENT_ID, secret="the-right-one")
    with pytest.raises(TokenAcquisitionError) as info:
        secret_provider(authority, test_ca, secret=SECRET).token()
    text = str(info.value) + repr(info.value)
    assert SECRET not in text and "the-right-one" not in text
    assert "invalid_client" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, PermanentBackendError)


def test_unreachable_authority_is_transient(test_ca):
    provider = ClientCredentialsProvider(
        TENANT,
        CLIENT_ID,
        client_secret=SECRET,
        authority_host="https://127.0.0.1:9",
        instance_discovery=False,
        verify=str(test_ca.ca_path),
        timeout=(2, 2),
    )
    with pytest.raises(TransientBackendError):
        provider.token()


def _certificate(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cvault app")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    thumb = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    path = tmp_path / "app.pem"
    path.write_bytes(key_pem + cert_pem)
    path.chmod(0o600)
    return path, cert_pem, thumb


@pytest.mark.parametrize("with_thumbprint", [True, False])
def test_certificate_credential(authority, test_ca, token_registry, tmp_path, with_thumbprint):
    path, cert_pem, thumb = _certificate(tmp_path)
    authority.register(CLIENT_ID, certificate_pem=cert_pem)
    config = OneDriveConfig(
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        credential="certificate",
        certificate_file=str(path),
        certificate_thumbprint=thumb if with_thumbprint else "",
        drive_id="b!drive",
        authority_host=authority.host,
        instance_discovery=False,
    )
    provider = provider_from_config(config, verify=str(test_ca.ca_path))
    try:
        token = provider.token()
    except TokenAcquisitionError:
        pytest.fail(f"assertion refused: {authority.assertion_errors}")
    assert token_registry.valid(token)
    form = authority.token_requests("client_credentials")[0].form
    assert "client_assertion" in form and "client_secret" not in form


def test_device_code_flow_with_callback_and_sealed_cache(
    authority, test_ca, token_registry, sealed_cache, recording_sleep
):
    authority.register(CLIENT_ID, public=True)
    shown = []
    provider = DeviceCodeProvider(
        TENANT,
        CLIENT_ID,
        prompt=shown.append,
        authority_host=authority.host,
        cache=sealed_cache,
        instance_discovery=False,
        verify=str(test_ca.ca_path),
        sleep=recording_sleep,
    )
    token = provider.token()
    assert token_registry.valid(token)
    assert len(shown) == 1 and "enter the code" in shown[0]
    assert recording_sleep.calls == [1]  # one authorization_pending, then the token
    raw = sealed_cache.path.read_bytes()
    assert stat.S_IMODE(sealed_cache.path.stat().st_mode) == 0o600
    assert token.encode() not in raw and b"fake-rt-" not in raw and b"refresh_token" not in raw.lower()
    # a new process: the sealed cache signs in silently, no prompt; force_refresh uses the refresh token
    key_cache = SealedTokenCache(sealed_cache.path, sealed_cache._seal, sealed_cache._unseal)
    again = DeviceCodeProvider(
        TENANT,
        CLIENT_ID,
        prompt=None,
        authority_host=authority.host,
        cache=key_cache,
        instance_discovery=False,
        verify=str(test_ca.ca_path),
        sleep=recording_sleep,
    )
    assert again.signed_in()
    assert again.token() == token
    refreshed = again.token(force_refresh=True)
    assert refreshed != token and token_registry.valid(refreshed)
    assert len(authority.token_requests("refresh_token")) == 1


def test_device_code_without_prompt_refuses_to_block(authority, test_ca):
    authority.register(CLIENT_ID, public=True)
    provider = DeviceCodeProvider(
        TENANT,
        CLIENT_ID,
        authority_host=authority.host,
        instance_discovery=False,
        verify=str(test_ca.ca_path),
    )
    with pytest.raises(TokenAcquisitionError):
        provider.token()


def test_tampered_cache_is_discarded(authority, test_ca, sealed_cache):
    authority.register(CLIENT_ID, secret=SECRET)
    secret_provider(authority, test_ca, sealed_cache).token()
    raw = bytearray(sealed_cache.path.read_bytes())
    raw[-1] ^= 1
    sealed_cache.path.write_bytes(bytes(raw))
    fresh = SealedTokenCache(sealed_cache.path, sealed_cache._seal, sealed_cache._unseal)
    secret_provider(authority, test_ca, fresh).token()
    assert len(authority.token_requests("client_credentials")) == 2


def test_requests_ca_bundle_is_honoured(authority, test_ca, token_registry, monkeypatch):
    authority.register(CLIENT_ID, secret=SECRET)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca.ca_path))
    provider = ClientCredentialsProvider(
        TENANT, CLIENT_ID, client_secret=SECRET, authority_host=authority.host, instance_discovery=False
    )
    assert token_registry.valid(provider.token())


def test_end_to_end_backend_from_config(
    authority, fake_graph, test_ca, tmp_path, monkeypatch, recording_sleep, token_registry
):
    """Config -> msal provider -> OneDrive backend; a revoked token is refreshed once through msal."""
    authority.register(CLIENT_ID, secret=SECRET)
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    config = OneDriveConfig.from_dict(
        {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "credential": "secret-file",
            "secret_file": str(secret_file),
            "drive_id": fake_graph.drive_id,
            "root_folder": "cvault/blobs",
            "authority_host": authority.host,
            "graph_base_url": fake_graph.base_url,
            "instance_discovery": False,
        }
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca.ca_path))
    provider = provider_from_config(config)
    backend = OneDriveBackend.from_config(config, provider, sleep=recording_sleep)
    backend.put("e2e1", b"hello")
    token_registry.revoke_all()
    assert backend.get("e2e1") == b"hello"
    assert len(authority.token_requests("client_credentials")) == 2
    assert [r.status for r in fake_graph.log if r.port == "api"].count(401) == 1


def test_secret_file_must_be_private(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    config = OneDriveConfig(
        tenant_id=TENANT, client_id=CLIENT_ID, secret_file=str(secret_file), drive_id="b!x"
    )
    with pytest.raises(PermanentBackendError) as info:
        provider_from_config(config)
    assert SECRET not in str(info.value)


def test_secret_env(monkeypatch):
    config = OneDriveConfig(tenant_id=TENANT, client_id=CLIENT_ID, credential="secret-env", drive_id="b!x")
    with pytest.raises(PermanentBackendError):
        provider_from_config(config, environ={})
    provider = provider_from_config(config, environ={"CVAULT_GRAPH_CLIENT_SECRET": SECRET})
    assert SECRET not in repr(provider)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"tenant_id": "not a tenant!"}, "tenant_id"),
        ({"client_id": "abc"}, "client_id"),
        ({"credential": "password"}, "credential"),
        ({"drive_id": ""}, "drive_id"),
        ({"root_folder": "a/con"}, "root_folder"),
        ({"root_folder": "bad:name"}, "root_folder"),
        ({"authority_host": "http://login.example"}, "authority_host"),
        ({"graph_base_url": "https://graph.microsoft.com"}, "graph_base_url"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"surprise": 1}, "surprise"),
        ({"secret_file": ""}, "secret_file"),
    ],
)
def test_config_validation_is_one_clear_line(change, field):
    data = {"tenant_id": TENANT, "client_id": CLIENT_ID, "secret_file": "/s", "drive_id": "b!x"}
    data.update(change)
    with pytest.raises(InvalidInput) as info:
        OneDriveConfig.from_dict(data)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_config_round_trip_and_national_cloud_scope():
    config = OneDriveConfig(
        tenant_id="contoso.onmicrosoft.com",
        client_id=CLIENT_ID,
        secret_file="/s",
        drive_id="b!x",
        graph_base_url="https://graph.microsoft.us/v1.0",
        authority_host="https://login.microsoftonline.us",
    ).validate()
    assert OneDriveConfig.from_dict(config.to_dict()) == config
    assert config.scopes == ["https://graph.microsoft.us/.default"]


def test_hot_path_imports_neither_msal_nor_requests():
    code = (
        "import sys; import vault.backends.graph_auth, vault.backends.onedrive_config, "
        "vault.backends.quickxor; bad = [m for m in ('msal', 'requests') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_microsoft_hosts_or_the_hosts_own_allowance_are_sent_a_credential():
    """review4 R4-4: the endpoints come from the vault, so they are pinned to the Microsoft cloud
    hosts (public, US Gov, China; port 443) unless this host's CVAULT_ALLOWED_HOSTS allows another."""
    from vault.backends.graph_auth import (
        ENV_ALLOWED_HOSTS,
        MICROSOFT_AUTHORITY_HOSTS,
        MICROSOFT_GRAPH_HOSTS,
        endpoint_allowed,
    )

    none: dict[str, str] = {}
    for url in (
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.us",
        "https://login.chinacloudapi.cn",
    ):
        assert endpoint_allowed(url, MICROSOFT_AUTHORITY_HOSTS, none) is None
    for url in ("https://graph.microsoft.us/v1.0", "https://microsoftgraph.chinacloudapi.cn/v1.0"):
        assert endpoint_allowed(url, MICROSOFT_GRAPH_HOSTS, none) is None
    for url in (
        "https://login.microsoftonline.com.evil.example",
        "https://login.microsoftonline.com:8443",
        "http://login.microsoftonline.com",
        "https://graph.microsoft.com",  # a Graph host is not an authority
        "https://127.0.0.1:9443",
    ):
        assert endpoint_allowed(url, MICROSOFT_AUTHORITY_HOSTS, none) is False, url
    allowed = {ENV_ALLOWED_HOSTS: "https://127.0.0.1:9443, https://proxy.example"}
    assert endpoint_allowed("https://127.0.0.1:9443", MICROSOFT_AUTHORITY_HOSTS, allowed) is True
    assert endpoint_allowed("https://proxy.example:443/v1.0", MICROSOFT_GRAPH_HOSTS, allowed) is True
    assert endpoint_allowed("https://127.0.0.1:9444", MICROSOFT_AUTHORITY_HOSTS, allowed) is False
