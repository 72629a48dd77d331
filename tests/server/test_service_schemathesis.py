"""schemathesis against the published OpenAPI description: no 5xx on generated input, and every
error in the documented shape (``{"error": {"code", "message", "exit_code"}}``).

The app is the real one (``create_app`` over a real vault folder), called in-process through
ASGI so the run stays bounded (a few examples per operation, well under a minute); the same app
behind uvicorn and TLS is covered by tests/test_service.py. Requests carry an engineer's bearer
token, so the generated bodies reach the facade rather than stopping at the 401.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.factories import assign, person
from tests.helpers import copy_vault, make_vault


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from datetime import timedelta

    from vault.server.app import ServiceSettings, create_app
    from vault.server.pool import VaultPool

    vdir = copy_vault(
        make_vault(tmp_path_factory.mktemp("st-template"), with_operator=False), tmp_path_factory.mktemp("st")
    )
    v = vdir.open()
    eve = person(v, "eve", "engineer")
    maria = person(v, "maria", "account_manager")
    token = eve.token(v)
    v.clients.add(v.users.resume(maria.token(v)), "acme", sla_end=v.ctx.now() + timedelta(days=365))
    assign(v, eve, "acme")
    v.close()
    pool = VaultPool(vdir.home)
    pool.unseal("key_file", str(vdir.key_file))
    # generous login limits: the generated logins must reach the identity service
    app = create_app(
        pool,
        ServiceSettings(
            background=False,
            address_burst=10**6,
            address_per_minute=10**6,
            user_burst=10**6,
            user_per_minute=10**6,
        ),
    )
    yield app, token
    pool.close()


def _check_error_shape(response) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "exit_code"}, body
        assert isinstance(body["error"]["exit_code"], int)


@pytest.mark.slow
def test_generated_requests_never_5xx_and_errors_in_shape(api):
    """Every operation of /openapi.json, a few generated bodies each (valid and invalid), with
    an engineer's token. schemathesis's pytest plugin is not used (it does not support this
    pytest); hypothesis drives each operation's case strategy directly."""
    from hypothesis import given

    app, token = api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 50
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call()
            assert response.status_code < 500, (case.path, response.status_code, response.text)
            _check_error_shape(response)

        try:
            run()
        except AssertionError as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n".join(failures[:10])
