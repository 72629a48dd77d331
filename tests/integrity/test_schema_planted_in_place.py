"""A constraint planted in place (review6 R6-5): one ``UPDATE sqlite_master`` under ``PRAGMA
writable_schema`` adds ``CHECK (disabled = 0 OR id != <bob>)`` to ``users`` of any vault, no
rebuild and no key. Before the token comparison of the schema check (vault/store/schema.py) the
check and ``cvault doctor`` found nothing, and ``cvault user disable bob`` then failed with a raw
sqlite3.IntegrityError ("internal error", exit 1) while bob stayed enabled: the plant pins any
protective UPDATE (a logout, an unassignment, a shred). Now the vault refuses to open (exit 6,
the schema named), and a constraint that still reached the top would be exit 6 too
(``vault.store.db.unexpected_constraint``), never "internal error" (guarantee 8b)."""

from __future__ import annotations

import sqlite3

from tests.helpers import cli_login, run_coroutine


def _plant_check(home, table: str, check: str) -> None:
    """The file writer: a CHECK constraint appended to ``table``'s stored SQL (no rebuild, no key)."""
    c = sqlite3.connect(home / "vault.db")
    try:
        (sql,) = c.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        (version,) = c.execute("PRAGMA schema_version").fetchone()
        c.execute("PRAGMA writable_schema = ON")
        c.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
            (sql.rstrip()[:-1] + f", CHECK ({check}))", table),
        )
        c.execute(f"PRAGMA schema_version = {version + 1}")
        c.commit()
    finally:
        c.close()


def test_a_planted_check_constraint_is_refused_at_open(staff, tmp_path):
    vdir = staff.vdir
    login, alice_env = cli_login(vdir, staff.alice, tmp_path)
    assert login.returncode == 0, login.stderr
    _plant_check(vdir.home, "users", f"disabled = 0 OR id != {staff.bob.user_id}")

    doctor = vdir.cli("--json", "doctor", env=alice_env)
    disable = vdir.cli("user", "disable", "bob", env=alice_env)
    assert "Traceback" not in disable.stderr, disable.stderr
    assert disable.returncode == 6 and "schema" in disable.stderr, (
        f"a planted CHECK constraint is not refused by the schema check: user disable exited"
        f" {disable.returncode} ({disable.stderr.strip()[:160]!r}); doctor exited {doctor.returncode}"
    )


def test_an_unhandled_constraint_failure_is_an_integrity_failure_not_internal_error():
    """Defence in depth behind the schema check: the CLI's and the service's top-level handlers
    turn a constraint no caller handled into exit 6 / 409 integrity_failure."""
    import json

    from fastapi import FastAPI
    from starlette.requests import Request

    from cli.errors import report
    from vault.server.errors import install_error_handlers

    lines: list[str] = []
    assert report(sqlite3.IntegrityError("CHECK constraint failed: planted"), False, lines.append) == 6
    assert lines and lines[0].startswith("cvault: integrity failure:") and "doctor" in lines[0], lines
    assert "planted" not in lines[0]  # SQLite's message may quote the schema: never shown

    app = FastAPI()
    install_error_handlers(app)
    request = Request({"type": "http", "method": "POST", "path": "/v1/secret/get", "headers": []})
    handler = app.exception_handlers[Exception]
    answer = run_coroutine(handler(request, sqlite3.IntegrityError("CHECK constraint failed: planted")))
    body = json.loads(answer.body)
    assert answer.status_code == 409 and body["error"]["code"] == "integrity_failure", body
    assert "planted" not in answer.body.decode()
