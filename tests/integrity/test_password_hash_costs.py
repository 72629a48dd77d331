"""review10 R10-4 (medium, availability): R8-5 bounded the Argon2id costs of the unseal slots, but
the password check took its costs from the stored PHC string: ``crypto.password_verify`` handed
``users.password_hash`` (no row MAC covers its value: the users row MAC covers only
``password_hash IS NULL``) to ``Argon2id.verify_phc_encoded``. A file writer (A4, no key) sets a
user's hash to ``$argon2id$v=19$m=65536,t=4294967295,p=4$...``; the next login attempt for that
user (anyone: ``cvault login``, or a stranger's ``/v1/users/login``, which needs no session) ran
four billion passes while holding the process's one Argon2id turn (host-wide with ``--workers``),
so every later login, password change and unseal of the process was refused busy until a
restart. Fixed: ``crypto.password_phc_ok`` parses the stored string (exactly the form
``password_hash`` writes, costs within ``crypto.argon2id_params_ok``) before any derivation, and
the identity service answers anything else with the integrity failure naming the user (exit 6,
one line, "run cvault doctor"). Guarantee 48.

The CLI and service cases run in subprocesses with a guard timeout, so a regression fails instead
of hanging the run; the guard is not a timing assertion (the fixed code derives nothing)."""

from __future__ import annotations

import base64
import subprocess

import pytest

from tests.factories import person
from tests.helpers import file_sql
from tests.integrity.test_meta_values import _assert_one_line
from vault import crypto
from vault.errors import IntegrityFailure

#: a guard against the hang these replay (the fixed code answers at once), not a timing assertion
GUARD_SECONDS = 30

SALT = base64.b64encode(b"s" * 16).decode().rstrip("=")
HASH = base64.b64encode(b"h" * 32).decode().rstrip("=")


def _phc(costs: str = "m=65536,t=3,p=4", *, head: str = "$argon2id$v=19$", salt=SALT, digest=HASH) -> str:
    return f"{head}{costs}${salt}${digest}"


#: stored ``password_hash`` values (SQL literals) that are not a hash cvault writes; before the
#: fix the cost cases derived (for ever: t = 2**32 - 1; 4 TiB: m = 2**32 - 1), the others answered
#: "wrong password" or "password check unavailable" after the attempt was made
PLANTED = {
    "passes_2_32": _phc("m=65536,t=4294967295,p=4"),
    "memory_4_tib": _phc("m=4294967295,t=3,p=4"),
    "passes_65": _phc("m=65536,t=65,p=4"),
    "memory_over_1_gib": _phc(f"m={crypto.ARGON2_MAX_MEMORY_KIB + 1},t=3,p=4"),
    "memory_below_floor": _phc("m=8,t=3,p=4"),
    "lanes_255": _phc("m=65536,t=3,p=255"),
    "lanes_zero": _phc("m=65536,t=3,p=0"),
    "leading_zero": _phc("m=065536,t=3,p=4"),
    "argon2i": _phc(head="$argon2i$v=19$"),
    "version_16": _phc(head="$argon2id$v=16$"),
    "extra_parameter": _phc("m=65536,t=3,p=4,keyid=AA"),
    "short_salt": _phc(salt=SALT[:11]),
    "long_hash": _phc(digest=HASH + "AAAA"),
    "padded": _phc(salt=SALT + "=="),
    "trailing_newline": _phc() + "\n",
    "not_a_phc": "x",
    "empty": "",
}
#: the same as SQL literals of other types (the column is TEXT with no row MAC over its value)
OTHER_TYPES = {"a_blob": "CAST(? AS BLOB)", "an_integer": "4294967295", "a_real": "1.5"}


def _cli_login(vdir, who):
    try:
        return vdir.cli(
            "login",
            who.name,
            "--password-stdin",
            "--totp",
            who.code(),
            input=who.password + "\n",
            env=vdir.env(CVAULT_SESSION_FILE=str(vdir.home.parent / f"{who.name}.session.json")),
            timeout=GUARD_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"cvault login was still deriving after {GUARD_SECONDS} s: the stored hash chose its own"
            " Argon2id costs (review10 R10-4)"
        ) from None


@pytest.fixture
def eve(vdir):
    v = vdir.open()
    try:
        return person(v, "eve", "engineer", real_password=True)
    finally:
        v.close()


def _assert_hash_failure(result) -> None:
    line = _assert_one_line(result, 6)
    assert "password hash of user eve" in line and "run cvault doctor" in line, line


def test_the_hash_cvault_wrote_logs_in(vdir, eve):
    """The control: the hash as cvault wrote it passes the check and logs in."""
    (stored,) = file_sql(vdir, "SELECT password_hash FROM users WHERE name = 'eve'")[0]
    assert crypto.password_phc_ok(stored), stored
    done = _cli_login(vdir, eve)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_password_hash_is_exit_6_before_any_derivation(vdir, eve, case):
    file_sql(vdir, "UPDATE users SET password_hash = ? WHERE name = 'eve'", (PLANTED[case],))
    _assert_hash_failure(_cli_login(vdir, eve))


@pytest.mark.parametrize("case", sorted(OTHER_TYPES))
def test_a_password_hash_of_another_type_is_exit_6(vdir, eve, case):
    sql = OTHER_TYPES[case]
    file_sql(
        vdir, f"UPDATE users SET password_hash = {sql} WHERE name = 'eve'", (_phc(),) if "?" in sql else ()
    )
    _assert_hash_failure(_cli_login(vdir, eve))


def test_every_password_check_refuses_before_deriving(vdir, eve, monkeypatch):
    """Login, ``passwd`` and a re-enrollment after a TOTP reset (the three readers of a stored
    hash) refuse the planted hash without taking the Argon2id turn."""
    v = vdir.open()
    try:
        principal = eve.principal(v)
        file_sql(vdir, "UPDATE users SET password_hash = ? WHERE name = 'eve'", (PLANTED["passes_2_32"],))

        def derived():
            raise AssertionError("an Argon2id derivation ran for a planted hash")

        monkeypatch.setattr(crypto, "argon2_turn", derived)
        with pytest.raises(IntegrityFailure, match="password hash of user eve"):
            v.users.login("eve", eve.password, totp=eve.code())
        with pytest.raises(IntegrityFailure, match="password hash of user eve"):
            v.users.passwd(principal, eve.password, "another long password 7")
        from vault.identity.facts import user_row
        from vault.policy import AuditEvent

        with v.ctx.db.read() as conn:
            user = user_row(conn, "eve")
        with pytest.raises(IntegrityFailure, match="password hash of user eve"):
            v.users._verify_password(user, eve.password, AuditEvent.AUTH_ENROLL, "cli")
    finally:
        v.close()
    with pytest.raises(ValueError):  # the crypto module's own refusal, whoever calls it
        crypto.password_verify(eve.password, PLANTED["passes_2_32"])


def test_a_stranger_s_login_to_the_service_is_the_integrity_answer_and_others_still_log_in(
    vdir, eve, tmp_path
):
    """``POST /v1/users/login`` needs no session: a stranger's attempt for eve is answered 409
    ``integrity_failure`` at once, and another user's login in the same process still works (the
    Argon2id turn is not held)."""
    from tests.server.harness import assert_error_shape, start_service

    v = vdir.open()
    try:
        ada = person(v, "ada", "engineer", real_password=True)
    finally:
        v.close()
    file_sql(vdir, "UPDATE users SET password_hash = ? WHERE name = 'eve'", (PLANTED["passes_2_32"],))
    service = start_service(vdir, tmp_path / "svc")
    try:
        client = service.client()
        try:
            status, body = client.post(
                "/v1/users/login", {"name": "eve", "password": "a stranger's guess", "totp": "123456"}
            )
        except OSError:
            raise AssertionError("the service's login for eve was still deriving (R10-4)") from None
        assert status == 409 and assert_error_shape(body, "integrity_failure")["exit_code"] == 6, body
        status, body = service.client().post(
            "/v1/users/login", {"name": "ada", "password": ada.password, "totp": ada.code()}
        )
        assert status == 200 and body.get("token"), body
    finally:
        service.stop()


def test_doctor_names_a_planted_password_hash_without_deriving(vdir, eve):
    """``cvault doctor`` lists the user whose stored hash is not one cvault writes (and how to
    repair it), and finds nothing to say about the hash cvault wrote."""
    import json

    clean = vdir.cli("--json", "doctor")
    assert not any("password hash" in p for p in json.loads(clean.stdout)["problems"]), clean.stdout
    file_sql(vdir, "UPDATE users SET password_hash = ? WHERE name = 'eve'", (PLANTED["passes_2_32"],))
    try:
        doctor = vdir.cli("--json", "doctor", timeout=GUARD_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError("cvault doctor was still running (R10-4)") from None
    assert doctor.returncode != 0
    problems = json.loads(doctor.stdout)["problems"]
    assert any("password hash of user eve" in p and "cvault user reset eve" in p for p in problems), problems
