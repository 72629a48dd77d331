"""pytest fixtures for the OneDrive / Microsoft Graph fakes (imported by tests/conftest.py).

* ``test_ca`` (session): throw-away CA + 127.0.0.1 server certificate; ``test_ca.ca_path`` is what
  clients pass as ``verify=`` (or set as ``REQUESTS_CA_BUNDLE``).
* ``token_registry``: the access tokens the fake Graph accepts (shared with the authority).
* ``fake_graph``: a started :class:`~tests.fakes.graph_server.FakeGraph` (API + content ports).
* ``fake_authority``: a started :class:`~tests.fakes.authority.FakeAuthority` on the same registry.
* ``recording_sleep``: a sleep stand-in that records the waits and never sleeps.
* ``graph_client``: a :class:`~vault.backends.graph.GraphClient` on ``fake_graph`` with a
  registry-backed token provider, ``recording_sleep`` and a seeded RNG.
* ``onedrive_backend``: an :class:`~vault.backends.onedrive.OneDriveBackend` over ``graph_client``.
* ``authority``: the fake authority for tenant ``TENANT`` with the app ``CLIENT_ID`` registered;
  ``remote_config``: a replica configuration (``cvault remote set`` settings) against both fakes,
  with ``REQUESTS_CA_BUNDLE`` set for this process and its children.
"""

from __future__ import annotations

import os
import random
import threading

import pytest

from tests.fakes.authority import FakeAuthority
from tests.fakes.graph_server import FakeGraph, TokenRegistry
from tests.fakes.https import make_test_ca

__all__ = [
    "RecordingSleep",
    "RegistryTokenProvider",
    "test_ca",
    "token_registry",
    "fake_graph",
    "fake_authority",
    "recording_sleep",
    "graph_tokens",
    "graph_client",
    "onedrive_backend",
    "authority",
    "remote_config",
]


class RecordingSleep:
    """Injected in place of time.sleep: records every wait, returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)

    @property
    def total(self) -> float:
        with self._lock:
            return sum(self.calls)


class RegistryTokenProvider:
    """A TokenProvider for client tests that issues tokens straight from the registry."""

    def __init__(self, registry: TokenRegistry) -> None:
        self.registry = registry
        self.refreshes = 0
        self._lock = threading.Lock()
        self._token = registry.issue()

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                self.refreshes += 1
                self._token = self.registry.issue()
            return self._token

    @property
    def current(self) -> str:
        return self._token


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture
def token_registry():
    return TokenRegistry()


def allow_host(monkeypatch, url: str) -> None:
    """This host's configuration allows the fake's loopback origin as an endpoint
    (CVAULT_ALLOWED_HOSTS, review4 R4-4: endpoints other than Microsoft's are refused otherwise)."""
    from vault.backends.graph_auth import ENV_ALLOWED_HOSTS

    now = os.environ.get(ENV_ALLOWED_HOSTS, "")
    monkeypatch.setenv(ENV_ALLOWED_HOSTS, f"{now} {url}".strip())


@pytest.fixture
def fake_graph(test_ca, token_registry, monkeypatch):
    fake = FakeGraph(test_ca.server_context(), token_registry).start()
    allow_host(monkeypatch, fake.base_url)
    yield fake
    fake.stop()


@pytest.fixture
def fake_authority(test_ca, token_registry, monkeypatch):
    authority = FakeAuthority(test_ca.server_context(), token_registry, device_interval=1).start()
    allow_host(monkeypatch, authority.host)
    yield authority
    authority.stop()


@pytest.fixture
def recording_sleep():
    return RecordingSleep()


@pytest.fixture
def graph_tokens(token_registry):
    return RegistryTokenProvider(token_registry)


@pytest.fixture
def graph_client(fake_graph, graph_tokens, recording_sleep, test_ca):
    from vault.backends.graph import GraphClient

    client = GraphClient(
        graph_tokens,
        base_url=fake_graph.base_url,
        verify=str(test_ca.ca_path),
        sleep=recording_sleep,
        rng=random.Random(1234),
    )
    yield client
    client.close()


@pytest.fixture
def onedrive_backend(graph_client, fake_graph):
    from vault.backends.onedrive import OneDriveBackend

    return OneDriveBackend(graph_client, fake_graph.drive_id, "cvault/blobs")


# --- a OneDrive replica configuration against the fakes (sync and service tests) -------------

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "graph-client-secret-value-123"


@pytest.fixture
def authority(test_ca, token_registry, monkeypatch):
    a = FakeAuthority(test_ca.server_context(), token_registry, tenant=TENANT, device_interval=1).start()
    allow_host(monkeypatch, a.host)
    a.register(CLIENT_ID, secret=SECRET)
    yield a
    a.stop()


@pytest.fixture
def remote_config(authority, fake_graph, tmp_path, test_ca, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(test_ca.ca_path))
    secret_file = tmp_path / "graph.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    return {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "credential": "secret-file",
        "secret_file": str(secret_file),
        "drive_id": fake_graph.drive_id,
        "root_folder": "cvault",
        "authority_host": authority.host,
        "graph_base_url": fake_graph.base_url,
        "instance_discovery": False,
    }
