"""One service request reads the account rows once (docs/service.md, "One read"): the user, session
and roles rows ``users.resume`` read serve that request's first decision, and never anything else.

Each test replays a way the lent rows could outlive what they describe: past the request's end,
past a write on the same connection, past the one decision, or for another principal. Real SQLite
files; the second vault handle is a second connection, as another request or process would be."""

from __future__ import annotations

import pytest

from tests.factories import edit_rows, engineer_on_acme, person
from tests.helpers import make_vault
from vault.clock import to_epoch
from vault.errors import AccessDenied, AuthenticationFailed

REFUSED = (AccessDenied, AuthenticationFailed)


@pytest.fixture
def env(tmp_path):
    vdir = make_vault(tmp_path, with_operator=False)
    v = vdir.open()
    token = engineer_on_acme(v)
    v.secrets.put(v.users.resume(token), "acme", "rec/1", "access", {"password": "pw-1"})
    other = vdir.open()
    yield v, other, token
    other.close()
    v.close()


def end_session(vault, session_id: str) -> None:
    at = to_epoch(vault.ctx.now())
    edit_rows(vault, "sessions", "ended_at = ?", (at,), "token_hash = ?", (session_id,))


def test_decision_reuses_the_rows_resume_read(env):
    v, _, token = env
    statements: list[str] = []
    with v.ctx.one_request():
        p = v.users.resume(token, origin="api:127.0.0.1")
        v.ctx.db.conn.set_trace_callback(statements.append)
        try:
            assert v.secrets.get(p, "acme", "rec/1").fields["password"] == "pw-1"
        finally:
            v.ctx.db.conn.set_trace_callback(None)
    tables = " ".join(statements)
    assert "FROM sessions" not in tables and "FROM users " not in tables and "FROM user_roles" not in tables
    assert "FROM assignments" in tables  # the client's facts are read for the decision, as before


def test_lent_rows_end_with_the_request(env):
    v, other, token = env
    with v.ctx.one_request():
        p = v.users.resume(token)
    end_session(other, p.session_id)  # revoked between two requests
    with pytest.raises(REFUSED):  # a decision outside any request (the CLI's, a job's)
        v.secrets.get(p, "acme", "rec/1")
    with v.ctx.one_request(), pytest.raises(REFUSED):
        v.secrets.get(p, "acme", "rec/1")


def test_a_write_on_the_connection_makes_the_decision_read_again(env):
    v, _, token = env
    with v.ctx.one_request():
        p = v.users.resume(token)
        edit_rows(v, "users", "disabled = 1", (), "name = ?", ("eve",))  # this connection writes
        with pytest.raises(REFUSED):
            v.secrets.get(p, "acme", "rec/1")


def test_rows_serve_one_decision_only(env):
    v, other, token = env
    with v.ctx.one_request():
        p = v.users.resume(token)
        v.secrets.get(p, "acme", "rec/1")
        end_session(other, p.session_id)
        with pytest.raises(REFUSED):
            v.secrets.get(p, "acme", "rec/1")
    # the same without the audit write in between (the service's group commit may write a
    # request's event on another connection): the second gathering reads the rows itself
    with v.ctx.one_request():
        token2 = person(other, "bob", "engineer").token(other)
        q = v.users.resume(token2)
        first, _ = v.ctx.gather_facts(q, None, v.ctx.now())
        end_session(other, q.session_id)
        second, _ = v.ctx.gather_facts(q, None, v.ctx.now())
    assert first.session_valid and not second.session_valid


def test_rows_serve_only_their_own_session(env):
    v, other, token = env
    second = person(other, "sam", "engineer")  # not assigned to acme
    sam = other.users.resume(second.token(other))
    with v.ctx.one_request():
        v.users.resume(token)  # eve's rows lent
        with pytest.raises(REFUSED):
            v.secrets.get(sam._replace(name="eve", user_id=None), "acme", "rec/1")
    with v.ctx.one_request():
        v.users.resume(token)
        with pytest.raises(REFUSED):
            v.secrets.get(sam, "acme", "rec/1")
