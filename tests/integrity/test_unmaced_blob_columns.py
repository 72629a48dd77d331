"""review9 R9-5 (R7-4's class, readers the R7-4 sweep did not reach): a BLOB column that no row MAC
covers was converted with ``bytes(value)``. A file writer's TEXT there was ``internal error:
TypeError`` (exit 1), an INTEGER of 10**13 ``MemoryError``, and 2**31 allocated and zeroed 2 GiB
each time the row was read: for ``enrollment.code_hash``, on every ``user enroll`` attempt with
any well-formed code, which the service's enroll page lets a stranger make. Each such column is
now read by the one strict reader (:func:`vault.store.stored.blob`: a BLOB of the exact size
cvault writes), else exit 6 and one line naming the table and row (docs/security.md guarantee 48).

Through real ``cvault`` subprocesses: ``user enroll`` (enrollment.code_hash, and its expires_at,
compared with an integer), ``login`` with a recovery code (recovery_codes.code_hash), ``sla
certificate`` (shred_certificates.signature), ``sla sweep`` (the shred manifest's nonces of
record_versions.wrapped_dek, client_keys.wrapped and client_audit_keys.wrapped) and ``custody
set`` (client_audit_keys.wrapped, unwrapped under the old custody). A BLOB of another length
(``x'00'``) is refused the same way: it is no value cvault wrote."""

from __future__ import annotations

import pytest

from tests.factories import onboard
from tests.helpers import add_client, file_sql, operator
from tests.integrity.test_meta_values import _assert_one_line

#: TEXT, a number that allocated 10**13 bytes, a BLOB of the wrong length
VALUES = ["'abc'", "10000000000000", "x'00'"]


def _refused(result, names: str) -> None:
    line = _assert_one_line(result, 6)
    assert line.startswith("cvault: integrity failure: the ") and names in line, line


def _dora(staff) -> str:
    """dora onboarded now (the CLI's clock): her enrollment code."""
    v = staff.vdir.open()
    try:
        return onboard(v, "dora", ["engineer"], requester=staff.alice, approver=staff.ada)["enrollment_code"]
    finally:
        v.close()


def _enroll(staff, code: str):
    return staff.vdir.cli(
        "user", "enroll", "dora", "--code-stdin", "--password-stdin",
        input=f"{code}\ndora-password-123\ndora-password-123\n",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value"), [("code_hash", v) for v in VALUES] + [("expires_at", "'abc'"), ("expires_at", "1.5")]
)
def test_user_enroll_with_an_edited_enrollment_row_is_exit_6(staff, column, value):
    code = _dora(staff)
    file_sql(staff.vdir, f"UPDATE enrollment SET {column} = {value}")
    _refused(_enroll(staff, code), "enrollment row of user dora")
    # and any well-formed code: no conversion, no allocation, the same line
    _refused(_enroll(staff, "AAAA-BBBB-CCCC"), "enrollment row of user dora")


@pytest.mark.parametrize("value", VALUES)
def test_a_login_with_a_recovery_code_and_an_edited_code_hash_is_exit_6(staff, tmp_path, value):
    code = _dora(staff)
    v = staff.vdir.open()
    try:
        recovery = v.users.enroll("dora", code, "dora-password-123")["recovery_codes"]
    finally:
        v.close()
    file_sql(
        staff.vdir,
        f"UPDATE recovery_codes SET code_hash = {value} WHERE id = (SELECT min(id) FROM recovery_codes)",
    )
    login = staff.vdir.cli(
        "login", "dora", "--password-stdin", "--recovery-code-stdin",
        input=f"dora-password-123\n{recovery[0]}\n",
        env=staff.vdir.env(CVAULT_SESSION_FILE=str(tmp_path / "dora.json")),
    )  # fmt: skip
    _refused(login, "recovery_codes row ")


def _shredded(vdir) -> None:
    v = vdir.open()
    try:
        add_client(v, "acme", grace_days=0)
    finally:
        v.close()
    assert vdir.cli("sla", "expire", "acme", "--reason", "ended").returncode == 0
    swept = vdir.cli("sla", "sweep")
    assert swept.returncode == 0, swept.stderr


@pytest.mark.parametrize("value", VALUES)
def test_sla_certificate_with_an_edited_signature_is_exit_6(vdir, value):
    _shredded(vdir)
    assert vdir.cli("sla", "certificate", "acme").returncode == 0
    file_sql(vdir, f"UPDATE shred_certificates SET signature = {value}")
    _refused(vdir.cli("sla", "certificate", "acme"), "shred_certificates row of client acme")
    _refused(vdir.cli("sla", "certificate", "acme", "--json"), "shred_certificates row of client acme")


#: (table, column, the row named): the wrapped keys whose nonces the shred manifest records
MANIFEST = [
    ("record_versions", "wrapped_dek", "record_versions row of record "),
    ("client_keys", "wrapped", "client_keys row (version 1) of client acme"),
    ("client_audit_keys", "wrapped", "client_audit_keys row of client acme"),
]


@pytest.mark.parametrize(("table", "column", "names"), MANIFEST)
@pytest.mark.parametrize("value", ["'abc'", "10000000000000"])
def test_the_shred_manifest_of_an_edited_wrapped_key_is_exit_6(vdir, table, column, names, value):
    v = vdir.open()
    try:
        add_client(v, "acme", grace_days=0)
        v.secrets.put(operator(), "acme", "a/b", "note", {"text": "x"})
    finally:
        v.close()
    assert vdir.cli("sla", "expire", "acme", "--reason", "ended").returncode == 0
    file_sql(vdir, f"UPDATE {table} SET {column} = {value}")
    _refused(vdir.cli("sla", "sweep"), names)
    assert file_sql(vdir, "SELECT count(*) FROM shred_certificates") == [(0,)]


@pytest.mark.parametrize("value", ["'abc'", "10000000000000"])
def test_custody_set_with_an_edited_client_audit_key_is_exit_6(vdir, tmp_path, value):
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "a/b", "note", {"text": "x"})  # its audit detail key
    finally:
        v.close()
    file_sql(vdir, f"UPDATE client_audit_keys SET wrapped = {value}")
    assert file_sql(vdir, "SELECT count(*) FROM client_audit_keys") == [(1,)]
    moved = vdir.cli("custody", "set", "local", "--file", str(tmp_path / "new.custody"))
    _refused(moved, "client_audit_keys row of client ")


@pytest.mark.parametrize("value", ["'abc'", "10000000000000"])
def test_custody_set_with_an_edited_client_key_is_exit_6(vdir, tmp_path, value):
    v = vdir.open()
    try:
        add_client(v, "acme")
    finally:
        v.close()
    file_sql(vdir, f"UPDATE client_keys SET wrapped = {value}")
    moved = vdir.cli("custody", "set", "local", "--file", str(tmp_path / "new.custody"))
    _refused(moved, "client_keys row (version 1) of client acme")


@pytest.mark.parametrize("value", VALUES)
def test_secret_get_with_an_edited_client_audit_key_is_exit_6(vdir, value):
    """Found by the sweep for further readers: the audit-detail key is unwrapped by every command
    that seals a detail for the client (secret get included); TEXT was ``internal error:
    TypeError``, 10**13 ``MemoryError``."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "a/b", "note", {"text": "s3cr3t-value"})
    finally:
        v.close()
    file_sql(vdir, f"UPDATE client_audit_keys SET wrapped = {value}")
    _refused(vdir.cli("secret", "get", "acme", "a/b"), "client_audit_keys row of client acme")


@pytest.mark.parametrize("value", ["'abc'", "10000000000000"])
def test_a_search_index_of_another_type_is_rebuilt_like_a_damaged_one(vdir, value):
    """Found by the same sweep: the sealed search index (a cache its AEAD authenticates, no row
    MAC) was converted with ``bytes()``: ``secret list``/``search`` were "internal error:
    TypeError/MemoryError". A value of another type is a damaged index, rebuilt from the records
    as one that fails authentication is (guarantee 29)."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "a/b", "note", {"text": "s3cr3t-value"})
    finally:
        v.close()
    assert vdir.cli("secret", "list", "acme").returncode == 0  # the index is built and stored
    assert file_sql(vdir, "SELECT count(*) FROM search_index") == [(1,)]
    file_sql(vdir, f"UPDATE search_index SET sealed = {value}")
    for args in (("secret", "list", "acme"), ("secret", "search", "a/b"), ("secret", "list", "--all")):
        got = vdir.cli(*args)
        assert got.returncode == 0 and "a/b" in got.stdout, (args, got.stdout, got.stderr)
        assert got.stderr == "", got.stderr
    assert file_sql(vdir, "SELECT typeof(sealed) FROM search_index") == [("blob",)]
