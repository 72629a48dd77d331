"""Issue 12, "must hold": an arbitrary single-row edit of the tables and columns the policy reads
(an UPDATE of one column of one row, or a copy of one row with one column changed, as a file writer
with plain sqlite3 would make) never turns a refusal into an allow, and never makes ``secret get``
return anything but the current value (docs/security.md, "File writer (A4)").

The cast is the file-writer world (tests/integrity/conftest.py): carl, rita and maria are refused
acme's secrets, eve is refused globex's; eve reads acme/office/firewall = ``pw-current-2`` (version
1 held ``pw-old-1``) and acme/office/gone is deleted (its version 1 held ``deleted-value``). The
PSA integrations halopsa and connectwise sign contract events with their own secrets; oldpsa was
removed: no edit lets one sign as another, or the removed one sign at all.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import copy_vault
from vault.clock import to_epoch
from vault.errors import VaultError

#: (table, column) pairs a decision or ``secret get`` reads
TARGETS = [
    ("users", "disabled"),
    ("users", "locked_until"),
    ("users", "training_valid_until"),
    ("users", "password_hash"),
    ("users", "name"),
    ("user_roles", "user_id"),
    ("user_roles", "role"),
    ("sessions", "user_id"),
    ("sessions", "created_at"),
    ("sessions", "last_seen"),
    ("sessions", "stepup_at"),
    ("sessions", "ended_at"),
    ("sessions", "token_hash"),
    ("assignments", "user_id"),
    ("assignments", "client_id"),
    ("assignments", "ends_at"),
    ("assignments", "ended_at"),
    ("clients", "sla_end"),
    ("clients", "grace_days"),
    ("clients", "shred_state"),
    ("clients", "name"),
    ("clients", "current_key_version"),
    ("records", "current_version"),
    ("records", "client_id"),
    ("records", "path_tag"),
    ("record_versions", "wrapped_dek"),
    ("record_versions", "blob_name"),
    ("record_versions", "version"),
    ("record_versions", "record_id"),
    ("account_requests", "approved_at"),
    ("account_requests", "kind"),
    ("account_requests", "user_id"),
    ("meta", "value"),
    ("teams", "removed_at"),
    ("team_members", "user_id"),
    ("team_members", "removed_at"),
    ("team_assignments", "client_id"),
    ("team_assignments", "ended_at"),
    ("integrations", "id"),
    ("integrations", "name"),
    ("integrations", "secret_sealed"),
    ("integrations", "disabled_at"),
]


@st.composite
def edits(draw):
    table, column = draw(st.sampled_from(TARGETS))
    row = draw(st.integers(min_value=0, max_value=40))
    source = draw(st.integers(min_value=0, max_value=40))  # another row's value of that column
    kind = draw(st.sampled_from(["null", "other_row", "shift", "int", "text"]))
    shift = draw(st.sampled_from([-1, 1, -86400 * 400, 86400 * 400, 10**9]))
    number = draw(st.integers(min_value=-(2**40), max_value=2**40))
    text = draw(st.sampled_from(["engineer", "admin", "x", "", "shredded", "acme", "eve", "reset"]))
    copy = draw(st.booleans())  # INSERT a copy of the row (mac included) instead of an UPDATE
    return table, column, row, source, kind, shift, number, text, copy


def _apply(db: Path, edit) -> str:
    table, column, row, source, kind, shift, number, text, copy = edit
    conn = sqlite3.connect(db)
    try:
        rowids = [r[0] for r in conn.execute(f"SELECT rowid FROM {table} ORDER BY rowid")]
        if not rowids:
            return "no rows"
        target = rowids[row % len(rowids)]
        other = rowids[source % len(rowids)]
        if kind == "null":
            value_sql, params = "NULL", ()
        elif kind == "other_row":
            value_sql, params = f"(SELECT {column} FROM {table} WHERE rowid = ?)", (other,)
        elif kind == "shift":
            value_sql, params = f"{column} + ?", (shift,)
        elif kind == "int":
            value_sql, params = "?", (number,)
        else:
            value_sql, params = "?", (text,)
        try:
            if copy and table != "meta":
                cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                keep = [c for c in cols if c not in ("id",)]
                select = ", ".join(value_sql if c == column else c for c in keep)
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(keep)}) SELECT {select} FROM {table} WHERE rowid = ?",
                    (*params, target),
                )
            else:
                conn.execute(f"UPDATE {table} SET {column} = {value_sql} WHERE rowid = ?", (*params, target))
            conn.commit()
        except sqlite3.Error as exc:  # a constraint refused the edit: nothing changed
            return f"refused by SQLite: {exc}"
        return "edited"
    finally:
        conn.close()


def _outcome(call):
    """The value a call returned, or the VaultError class it raised (anything else fails the test:
    a driver exception would be a traceback for the user)."""
    try:
        return call()
    except VaultError as exc:
        return type(exc)


def _read(v, tokens, who, client, path):
    def call():
        principal = v.users.resume(tokens[who])
        return v.secrets.get(principal, client, path).fields["text"]

    return _outcome(call)


def _event(v, secrets, who: str, key: bytes, n: int):
    """A contract event for acme named as integration ``who``, signed under ``key`` (docs/sla.md)."""
    import hashlib
    import hmac
    import json

    body = json.dumps({"id": f"evt-prop-{n}", "client": "acme", "contract_end": "2031-03-31"}).encode()
    stamp = str(to_epoch(v.ctx.now()))
    signature = "v1=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"x-cvault-integration": who, "x-cvault-timestamp": stamp, "x-cvault-signature": signature}
    return _outcome(lambda: v.integrations.receive(body, headers))


def _refused(got) -> bool:
    return isinstance(got, type) and issubclass(got, VaultError)


REFUSED = [
    ("carl", "acme", "office/firewall"),
    ("rita", "acme", "office/firewall"),
    ("maria", "acme", "office/firewall"),
    ("eve", "globex", "net/core"),
]


@pytest.fixture(scope="module")
def edit_template(world_template, tmp_path_factory):
    """The world with a live token each (made once; every example gets a copy of the folder)."""
    vdir, people, ids = world_template
    base = tmp_path_factory.mktemp("edits")
    mine = copy_vault(vdir, base)
    v = mine.open()
    try:
        tokens = {name: people[name].token(v) for name in ("eve", "carl", "rita", "maria")}
    finally:
        v.close()
    return mine, tokens, ids["integration_secrets"]


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edit=edits())
# the attacks of issue 12 as single-row edits (always run; rows in the cast's insertion order):
# the firewall's current version rolled back; the deleted record's marker skipped; eve's acme
# assignment copied to carl (user 3); carl's session (the 5th) moved to eve (user 2); the
# firewall's current version made a delete marker; the firewall moved to globex
@example(edit=("records", "current_version", 0, 0, "shift", -1, 0, "", False))
@example(edit=("records", "current_version", 1, 0, "shift", -1, 0, "", False))
@example(edit=("assignments", "user_id", 0, 0, "int", 1, 3, "", True))
@example(edit=("sessions", "user_id", 4, 0, "int", 1, 2, "", False))
@example(edit=("record_versions", "wrapped_dek", 1, 0, "null", 1, 0, "", False))
@example(edit=("records", "client_id", 0, 2, "other_row", 1, 0, "", False))
# integrations (rows: halopsa, connectwise, oldpsa removed): connectwise renamed halopsa's way is
# refused by UNIQUE, so: halopsa given connectwise's sealed secret; connectwise renamed; oldpsa
# enabled again; a copy of halopsa's row (mac included) under another name
@example(edit=("integrations", "secret_sealed", 0, 1, "other_row", 1, 0, "", False))
@example(edit=("integrations", "name", 1, 0, "text", 1, 0, "autotask", False))
@example(edit=("integrations", "disabled_at", 2, 0, "null", 1, 0, "", False))
@example(edit=("integrations", "name", 0, 0, "text", 1, 0, "autotask", True))
def test_a_single_row_edit_never_grants_or_rolls_back(edit_template, tmp_path_factory, edit):
    template, tokens, integration_secrets = edit_template
    base = tmp_path_factory.mktemp("edit")
    shutil.rmtree(base)
    base.mkdir()
    vdir = copy_vault(template, base)
    what = _apply(vdir.home / "vault.db", edit)
    opened = _outcome(vdir.open)
    if not hasattr(opened, "ctx"):
        return  # the vault refused to open (an integrity failure): nothing is granted
    v = opened
    try:
        for who, client, path in REFUSED:
            got = _read(v, tokens, who, client, path)
            assert isinstance(got, type) and issubclass(got, VaultError), (edit, what, who, got)
        current = _read(v, tokens, "eve", "acme", "office/firewall")
        assert current == "pw-current-2" or (isinstance(current, type) and issubclass(current, VaultError)), (
            edit,
            what,
            current,
        )
        gone = _read(v, tokens, "eve", "acme", "office/gone")
        assert isinstance(gone, type) and issubclass(gone, VaultError), (edit, what, gone)
        # the integrations: connectwise's secret never signs as halopsa (nor as a name the vault
        # never added), the removed oldpsa never signs (its secret is gone: the empty key), and
        # halopsa's own events are accepted as halopsa or refused
        secrets = {n: bytes.fromhex(s) for n, s in integration_secrets.items()}
        for n, (who, key) in enumerate(
            [("halopsa", secrets["connectwise"]), ("autotask", secrets["connectwise"]), ("oldpsa", b"")]
        ):
            got = _event(v, secrets, who, key, n)
            assert _refused(got), (edit, what, who, got)
        own = _event(v, secrets, "halopsa", secrets["halopsa"], 9)
        assert _refused(own) or own["integration"] == "halopsa", (edit, what, own)
    finally:
        v.close()
