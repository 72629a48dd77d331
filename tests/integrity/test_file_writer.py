"""Issue 12, attacks 1-4: someone who can write ``vault.db`` but holds no unseal secret edits it
with plain ``sqlite3`` statements. Each attack is replayed on the file and must end in a refusal
(exit 6, one line, no secret printed, no traceback) through the real CLI (subprocess) and against
a running ``cvault serve`` (docs/security.md, "File writer (A4)").

The cast (``world``): maria (account manager), eve (engineer, assigned to acme, trained), carl
(engineer, trained, assigned to globex only), rita (security reviewer), ada (admin); the team
acme-ops is assigned to acme and has no members. acme holds
office/firewall (version 1 ``pw-old-1``, version 2 ``pw-current-2``) and office/gone (deleted:
version 1 ``deleted-value``, version 2 a delete marker); globex holds net/core.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tests.factories import write_session_file
from tests.helpers import copy_vault
from tests.server.harness import assert_error_shape, start_service
from vault.identity.sessions import new_token

SECRETS = ("pw-old-1", "pw-current-2", "deleted-value", "globex-core")
FAR = 4102444800  # 2100-01-01


class World:
    def __init__(self, vdir, people, ids, folder: Path):
        self.vdir, self.people, self.ids, self.folder = vdir, people, ids, folder
        self.tokens: dict[str, str] = {}
        v = vdir.open()
        try:
            for name in ("eve", "carl", "rita", "maria"):
                self.tokens[name] = people[name].token(v)
        finally:
            v.close()

    @property
    def db(self) -> Path:
        return self.vdir.home / "vault.db"

    def sql(self, *statements: str, params: tuple = ()) -> None:
        """The attacker: plain sqlite3 on the file, no key."""
        conn = sqlite3.connect(self.db)
        try:
            for statement in statements:
                conn.execute(statement, params if "?" in statement else ())
            conn.commit()
        finally:
            conn.close()

    def scalar(self, sql: str):
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()

    def record_id(self, path_hint: str) -> int:
        # the attacker cannot read paths (they are sealed); the test knows the insertion order
        order = {"office/firewall": 0, "office/gone": 1, "net/core": 2}[path_hint]
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute("SELECT id FROM records ORDER BY id").fetchall()[order][0]
        finally:
            conn.close()

    def session_file(self, name: str, token: str | None = None) -> Path:
        path = self.folder / f"{name}-{secrets.token_hex(4)}.session.json"
        return write_session_file(path, self.ids["vault_id"], name, token or self.tokens[name])

    def cli_as(self, name: str, *args: str, token: str | None = None):
        env = self.vdir.env(CVAULT_SESSION_FILE=str(self.session_file(name, token)))
        return self.vdir.cli(*args, env=env)

    def doctor(self):
        env = self.vdir.env(CVAULT_SESSION_FILE=str(self.folder / "no-session.json"))
        return self.vdir.cli("--json", "doctor", env=env)


@pytest.fixture
def world(world_template, tmp_path) -> World:
    vdir, people, ids = world_template
    return World(copy_vault(vdir, tmp_path), people, ids, tmp_path)


def forge_session(world: World, user: str) -> str:
    """Attack 1: a session row with the SHA-256 of a random token, times now, for ``user``."""
    token = new_token()
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = world.scalar("SELECT CAST(strftime('%s') AS INTEGER)")
    world.sql(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen, stepup_at, origin)"
        " VALUES (?, ?, ?, ?, ?, 'cli')",
        params=(digest, world.ids[user], now, now, now),
    )
    return token


def _copy_assignment(world: World, to: str) -> str:
    return (
        "INSERT INTO assignments (client_id, user_id, created_at, created_by, ends_at, ended_at, mac)"
        f" SELECT client_id, {world.ids[to]}, created_at, created_by, ends_at, ended_at, mac"
        f" FROM assignments WHERE user_id = {world.ids['eve']}"
    )


def attack(world: World, name: str) -> tuple[str, tuple[str, ...], str | None]:
    """Apply attack ``name`` to the file; returns (who runs it, the command, a forged token)."""
    ids = world.ids
    get = ("secret", "get", "acme", "office/firewall")
    if name == "session_transplant":  # carl's token becomes eve's session
        world.sql(f"UPDATE sessions SET user_id = {ids['eve']} WHERE user_id = {ids['carl']}")
        return "carl", get, None
    if name == "forged_session":
        return "eve", get, forge_session(world, "eve")
    if name == "future_timestamps":  # an immortal session: every time a month ahead
        world.sql(
            "UPDATE sessions SET created_at = created_at + 30 * 86400, last_seen = last_seen + 30 * 86400,"
            f" stepup_at = stepup_at + 30 * 86400 WHERE user_id = {ids['eve']}"
        )
        return "eve", get, None
    if name == "copied_assignment":  # eve's acme assignment copied to carl
        world.sql(_copy_assignment(world, "carl"))
        return "carl", get, None
    if name == "copied_role_and_training":  # the reviewer becomes a trained, assigned engineer
        world.sql(
            "INSERT INTO user_roles (user_id, role, granted_at, granted_by, mac)"
            f" SELECT {ids['rita']}, role, granted_at, granted_by, mac FROM user_roles"
            f" WHERE user_id = {ids['eve']}",
            f"UPDATE users SET training_valid_until = {FAR} WHERE id = {ids['rita']}",
            _copy_assignment(world, "rita"),
        )
        return "rita", get, None
    if name == "team_member_planted":  # carl put into the team assigned to acme
        world.sql(
            "INSERT INTO team_members (team_id, user_id, added_at, added_by) SELECT id,"
            f" {ids['carl']}, created_at, 'maria' FROM teams WHERE name = 'acme-ops'"
        )
        return "carl", get, None
    if name == "rollback_current_version":
        rid = world.record_id("office/firewall")
        world.sql(f"UPDATE records SET current_version = current_version - 1 WHERE id = {rid}")
        return "eve", get, None
    if name == "deleted_record_revived":  # the delete marker skipped: the deleted value served
        rid = world.record_id("office/gone")
        world.sql(f"UPDATE records SET current_version = current_version - 1 WHERE id = {rid}")
        return "eve", ("secret", "get", "acme", "office/gone"), None
    if name == "current_version_made_a_delete_marker":
        rid = world.record_id("office/firewall")
        world.sql(
            "UPDATE record_versions SET wrapped_dek = NULL, blob_name = NULL"
            f" WHERE record_id = {rid} AND version = (SELECT current_version FROM records WHERE id = {rid})"
        )
        return "eve", get, None
    if name == "client_id_changed":  # the record moved to globex: hidden from acme
        world.sql(
            "UPDATE records SET client_id = (SELECT id FROM clients WHERE name = 'globex')"
            f" WHERE id = {world.record_id('office/firewall')}"
        )
        return "eve", get, None
    raise AssertionError(name)


ATTACKS = [
    "session_transplant",
    "forged_session",
    "future_timestamps",
    "copied_assignment",
    "copied_role_and_training",
    "team_member_planted",
    "rollback_current_version",
    "deleted_record_revived",
    "current_version_made_a_delete_marker",
    "client_id_changed",
]


def assert_refused_exit_6(proc) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 6, (proc.returncode, out)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "integrity failure" in lines[0], lines[0]
    assert "Traceback" not in out and "internal error" not in out
    for value in SECRETS:
        assert value not in out


def test_the_cast_reads_before_any_attack(world):
    """The baseline: eve reads the current value; carl and rita are refused; gone is gone."""
    ok = world.cli_as("eve", "secret", "get", "acme", "office/firewall", "--field", "text")
    assert ok.returncode == 0 and ok.stdout.strip() == "pw-current-2", ok.stderr
    assert world.cli_as("carl", "secret", "get", "acme", "office/firewall").returncode == 4
    assert world.cli_as("rita", "secret", "get", "acme", "office/firewall").returncode == 4
    assert world.cli_as("eve", "secret", "get", "acme", "office/gone").returncode == 5
    assert json.loads(world.doctor().stdout)["ok"] is True


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_ends_in_exit_6_through_the_cli(world, name):
    who, command, token = attack(world, name)
    proc = world.cli_as(who, *command, "--field", "text", token=token)
    assert_refused_exit_6(proc)
    # audited, naming the table and row id but no value
    events = world.scalar(
        "SELECT group_concat(reason, '|') FROM audit_events WHERE action = 'integrity.row_failure'"
    )
    assert events and ("failed authentication" in events or "does not match" in events), events
    # doctor finds it too (every row's MAC), and says which table
    doctor = world.doctor()
    assert doctor.returncode != 0
    report = json.loads(doctor.stdout)
    assert not report["ok"] and any("failed authentication" in p for p in report["problems"]), report
    for value in SECRETS:
        assert value not in doctor.stdout + doctor.stderr


def test_an_authentic_session_from_the_future_is_refused(world_template, tmp_path):
    """Time fields are bounded by now when read: a session created later than now (the clock
    moved back, or a row from another copy) does not count."""
    from tests.helpers import clock_at
    from vault.errors import AuthenticationFailed

    vdir, people, _ = world_template
    mine = copy_vault(vdir, tmp_path)
    clock = clock_at()
    v = mine.open(clock=clock)
    try:
        token = people["eve"].token(v, at=clock.now() + timedelta(hours=1))
        with pytest.raises(AuthenticationFailed, match="later than now"):
            v.users.resume(token)
        clock.advance(hours=2)  # and it stays refused: the refusal ended it
        with pytest.raises(AuthenticationFailed, match="session ended"):
            v.users.resume(token)
        # a session created now is fine
        assert v.users.resume(people["eve"].token(v, at=clock.now())).name == "eve"
    finally:
        v.close()


@pytest.fixture
def served_world(world):
    service = start_service(world.vdir, world.folder / "service")
    yield world, service
    service.stop()


SERVED = [
    "session_transplant",
    "forged_session",
    "copied_assignment",
    "copied_role_and_training",
    "team_member_planted",
    "rollback_current_version",
    "current_version_made_a_delete_marker",
    "client_id_changed",
]


@pytest.mark.slow
def test_attacks_on_a_running_service_are_refused(served_world):
    """The same edits made while ``cvault serve`` runs: every request after the edit is refused
    with the documented integrity error (code integrity_failure, exit code 6), never a value."""
    world, service = served_world
    body = {"client_name": "acme", "path": "office/firewall"}
    status, reply = service.client(world.tokens["eve"]).post("/v1/secrets/get", body)
    assert status == 200 and "pw-current-2" in json.dumps(reply), reply
    for name in SERVED:
        before = _snapshot(world)
        who, _, token = attack(world, name)
        status, reply = service.client(token or world.tokens[who]).post("/v1/secrets/get", body)
        err = assert_error_shape(reply, "integrity_failure")
        assert err["exit_code"] == 6 and status == 409, (name, status, reply)
        assert "failed authentication" in err["message"] or "does not match" in err["message"], err
        text = json.dumps(reply)
        for value in SECRETS:
            assert value not in text, name
        _undo(world, before)
    assert "Traceback" not in service.log()


def _snapshot(world: World) -> sqlite3.Connection:
    copy = sqlite3.connect(":memory:")
    live = sqlite3.connect(world.db)
    try:
        live.backup(copy)
    finally:
        live.close()
    return copy


def _undo(world: World, before: sqlite3.Connection) -> None:
    """Put the file back as it was (SQLite's backup API: the running service sees it), so the next
    attack starts from the authentic vault."""
    live = sqlite3.connect(world.db)
    try:
        before.backup(live)
    finally:
        live.close()
        before.close()


def test_a_planted_shred_job_destroys_nothing(world):
    """A ``shred_jobs`` row inserted for a live client would have the next sweep destroy its keys
    and custody secrets (outside the folder, beyond the file writer's reach): the client's own
    MACed row says it is not being shredded, so the sweep refuses (exit 6) and nothing is lost."""
    world.sql(
        "INSERT INTO shred_jobs (client_id, step, trigger, performed_by, sla_end, grace_days, manifest,"
        " started_at) SELECT id, 'started', 'sla', 'system:sweep', sla_end, grace_days, '{}', 0"
        " FROM clients WHERE name = 'acme'"
    )
    env = world.vdir.env(CVAULT_SESSION_FILE=str(world.folder / "no-session.json"))
    sweep = world.vdir.cli("sla", "sweep", env=env)
    assert_refused_exit_6(sweep)
    assert "shred job" in sweep.stderr
    ok = world.cli_as("eve", "secret", "get", "acme", "office/firewall", "--field", "text")
    assert ok.returncode == 0 and ok.stdout.strip() == "pw-current-2", ok.stderr
    assert world.scalar(
        "SELECT count(*) FROM client_keys WHERE client_id = (SELECT id FROM clients WHERE name = 'acme')"
    )


def test_a_planted_shred_request_cannot_be_approved_by_one_person(world):
    """Independent review F4: ``shred_requests`` rows carried no MAC, so one account manager who
    can also write the file could plant a request "from" a colleague and approve it alone (an
    early shred with no second person). The request's MAC fails: exit 6, the SLA untouched."""
    before = world.scalar("SELECT sla_end || '/' || grace_days FROM clients WHERE name = 'acme'")
    world.sql(
        "INSERT INTO shred_requests (client_id, requested_by, requested_at, reason)"
        " SELECT id, 'eve', CAST(strftime('%s') AS INTEGER), 'planted' FROM clients WHERE name = 'acme'"
    )
    approve = world.cli_as("maria", "sla", "approve-shred", "acme")
    assert_refused_exit_6(approve)
    assert world.scalar("SELECT sla_end || '/' || grace_days FROM clients WHERE name = 'acme'") == before
    ok = world.cli_as("eve", "secret", "get", "acme", "office/firewall", "--field", "text")
    assert ok.returncode == 0 and ok.stdout.strip() == "pw-current-2", ok.stderr
