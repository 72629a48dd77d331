"""The one registry (vault/api_spec.py) against its three readers: the facade's signatures, the
VaultAPI Protocol, the service client's proxies and the CLI's bounds. A change on any side fails."""

from __future__ import annotations

import inspect

import click
import pytest

from vault import api
from vault import api_spec as spec
from vault.facade import Vault

PROTOCOLS = {
    "users": api.UsersAPI,
    "access": api.AccessAPI,
    "teams": api.TeamsAPI,
    "contracts": api.ContractsAPI,
    "integrations": api.IntegrationsAPI,
    "clients": api.ClientsAPI,
    "secrets": api.SecretsAPI,
    "sla": api.SlaAPI,
    "audit": api.AuditAPI,
    "sync": api.SyncAPI,
    "slots": api.SlotsAPI,
    "maintenance": api.MaintenanceAPI,
    "custody": api.CustodyAPI,
    "backups": api.BackupsAPI,
}


def _shape(fn) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_operation_table_matches_facade_signatures():
    """Every API operation names a facade method with exactly these parameters (in order), so
    the service client's proxies bind arguments as the facade does. A facade change fails here."""
    from vault.facade import Vault

    classes = {name: service.service_class() for name, service in Vault.services().items()}
    for op in spec.OPERATIONS:
        sig = inspect.signature(getattr(classes[op.service], op.facade_method))
        dropped = {"self", "principal", *op.local_only}
        if op.passes_origin:
            assert "origin" in sig.parameters, op.name
            dropped.add("origin")
        if op.transport == "lines":
            assert "write" in sig.parameters, op.name
            dropped |= {"write", "out"}  # the server collects the lines; the client writes the file
        names = [n for n in sig.parameters if n not in dropped]
        assert names == [p.name for p in op.params], (op.name, names)
        assert ("principal" in sig.parameters) == op.auth, op.name
        for p in op.params:
            assert (sig.parameters[p.name].kind is inspect.Parameter.KEYWORD_ONLY) == p.keyword, (op.name, p)


def test_the_protocol_names_every_facade_service_with_the_facades_signatures():
    services = {name: s.service_class() for name, s in Vault.services().items()}
    assert set(PROTOCOLS) == set(services)
    for name, protocol in PROTOCOLS.items():
        methods = [m for m in vars(protocol) if not m.startswith("_") and callable(getattr(protocol, m))]
        assert methods, name
        for method in methods:
            assert _shape(getattr(protocol, method)) == _shape(getattr(services[name], method)), (
                name,
                method,
            )


def test_every_registry_operation_is_in_the_protocol():
    for op in spec.OPERATIONS:
        assert hasattr(PROTOCOLS[op.service], op.facade_method), op.name
        if op.client_side:
            assert hasattr(PROTOCOLS[op.service], op.client_side[0]), op.name


def test_the_service_client_has_a_proxy_per_operation_and_refuses_the_rest(tmp_path):
    from cli.service_client.client import ServiceVault
    from vault.errors import InvalidInput

    client = ServiceVault("https://127.0.0.1:9")  # never contacted: no call is made
    for op in spec.OPERATIONS:
        proxy = getattr(getattr(client, op.service), op.method)
        assert proxy.__name__ == op.method, op.name
    for name, protocol in PROTOCOLS.items():
        served = {op.facade_method for op in spec.OPERATIONS if op.service == name}
        served |= {op.client_side[0] for op in spec.OPERATIONS if op.service == name and op.client_side}
        served |= {op.method for op in spec.OPERATIONS if op.service == name}
        for method in vars(protocol):
            if method.startswith("_") or method in served or method == "resume":
                continue
            with pytest.raises(InvalidInput, match="own host only"):
                getattr(getattr(client, name), method)
    client.close()


def _int_option(command: click.Command, name: str) -> click.IntRange:
    (param,) = [p for p in command.params if p.name == name]
    assert isinstance(param.type, click.IntRange), (command.name, name)
    return param.type


@pytest.mark.parametrize(
    ("module", "command", "option", "operation", "parameter", "upper"),
    [
        ("cli.commands.client", "client_add", "grace_days", "clients.add", "grace_days", True),
        ("cli.commands.sla", "sla_renew", "grace_days", "sla.renew", "grace_days", True),
        ("cli.commands.sync", "sync_push", "workers", "sync.push", "workers", True),
        ("cli.commands.sync", "sync_pull", "workers", "sync.pull", "workers", True),
        # audit log --limit 2**63 was an internal error (issue 13 item 6)
        ("cli.commands.audit", "audit_log", "limit", "audit.log", "limit", True),
        # secret get --version: the library refuses versions past the registry's bound (the CLI
        # does not load the registry on its fast read path)
        ("cli.commands.secret", "secret_get", "version", "secrets.get", "version", False),
    ],
)
def test_the_cli_takes_its_bounds_from_the_registry(module, command, option, operation, parameter, upper):
    import importlib

    cmd = getattr(importlib.import_module(module), command)
    got = _int_option(cmd, option)
    low, high = spec.param(operation, parameter).limits
    assert got.min == low
    assert got.max == (high if upper else None)


def test_the_shared_parameters_state_the_librarys_own_bounds():
    """The registry states each shared bound once (vault.api_spec GRACE_BOUNDS, VERSION_BOUNDS):
    they are the library's own checks, so the API refuses exactly what the facade would."""
    from vault.records.service import MAX_VERSION

    assert spec.VERSION_BOUNDS == (1, MAX_VERSION)
    for name in ("clients.add", "sla.renew"):
        assert spec.param(name, "grace_days") is spec.GRACE_DAYS
    for name in ("sla.request_min_grace", "sla.approve_min_grace"):
        assert spec.param(name, "days") is spec.MIN_GRACE_DAYS
    for name in ("secrets.get", "secrets.attachment"):
        assert spec.param(name, "version") is spec.VERSION
    assert spec.param("secrets.restore", "version").limits == spec.VERSION_BOUNDS


def test_the_library_refuses_grace_periods_by_the_registrys_bounds(tmp_path):
    """The grace bound is written once (spec.GRACE_BOUNDS): client add, sla renew and the minimum
    grace period refuse one past it, with the bound in the message, and accept the bound itself."""
    from tests.helpers import add_client, make_vault, operator
    from vault.errors import InvalidInput

    low, high = spec.GRACE_BOUNDS
    v = make_vault(tmp_path).open()
    try:
        message = f"must be {low} to {high} days"
        for days in (low - 1, high + 1, True):
            with pytest.raises(InvalidInput, match=f"^grace period {message}$"):
                v.clients.add(operator(), f"c{days}", sla_end="+30d", grace_days=days)
            with pytest.raises(InvalidInput, match=f"^minimum grace period {message}$"):
                v.sla.request_min_grace(operator(), days)
        add_client(v, "acme", grace_days=high)
        with pytest.raises(InvalidInput, match=f"^grace period {message}$"):
            v.sla.renew(operator(), "acme", "+60d", grace_days=high + 1)
        assert v.sla.renew(operator(), "acme", "+60d", grace_days=high)
    finally:
        v.close()
