"""A file writer (A4: writes ``vault.db`` with plain sqlite3, holds no key) replaces a ``meta``
value with one of another type or shape: the sealed audit high-water mark (``audit_mark``) as
JSON, a number (``bytes(n)`` would allocate n bytes), a REAL, text that is no UTF-8, the right
bytes as TEXT; the audit key rows, the settings, the sweep record, the custody rows likewise.

Each value has one strict decoder (vault.audit.mark.decode_stored, vault.settings.decode_stored,
vault.store.meta, vault.audit.signing): whatever is stored, the command that reads it ends with
exit 6 and one line (the integrity alarm for the mark), never a traceback or "internal error"
(docs/security.md guarantee 48). Found by tests/integrity/test_row_edits_property.py (review5).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import add_client, copy_vault, operator, run_cli
from tests.helpers import file_sql as _sql
from vault.audit import mark as hwm
from vault.errors import AuditAlarm, IntegrityFailure

#: what a file writer may put in place of a value: SQL expression and parameters (NULL is refused
#: by the column's NOT NULL)
MALFORMED = {
    "json_list": ("?", ("[1, 2]",)),
    "json_null": ("?", ("null",)),
    "json_number": ("?", ("114",)),
    "json_dict_wrong_types": ("?", ('{"cp_seq": "x", "head_seq": [], "cp_digest": 1}',)),
    "json_dict_missing_fields": ("?", ("{}",)),
    "integer": ("?", (5,)),  # bytes(5) would be five zero bytes
    "huge_integer": ("?", (10**11,)),  # bytes(10**11) would allocate 100 GB
    "max_integer": ("?", (2**63 - 1,)),
    "negative_integer": ("?", (-1,)),
    "real": ("?", (1.5,)),
    "empty_text": ("?", ("",)),
    "non_utf8_text": ("CAST(? AS TEXT)", (b"\xff\xfe\x00\x80",)),
    "empty_blob": ("?", (b"",)),
    "short_blob": ("?", (b"\x00" * 40,)),
    "long_blob": ("?", (b"\x00" * 10_000,)),
    "sealed_size_blob": ("?", (b"\x01" * 142,)),  # the size of a sealed mark, not one
}
#: edits of the authentic mark itself: its bytes as TEXT (a blob instead of text, the other way
#: round), one byte shorter, one byte longer
OF_THE_MARK = {
    "mark_as_text": "CAST(value AS TEXT)",
    "mark_truncated": "substr(value, 1, length(value) - 1)",
    "mark_extended": "value || x'00'",
}


def _plant(vdir, key: str, sql: str, params: tuple = ()) -> None:
    _sql(
        vdir,
        f"INSERT INTO meta (key, value) VALUES (?, {sql})"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, *params),
    )


@pytest.fixture
def acme(vdir):
    """The template vault with acme and one secret; the operator's session file written now
    (from here on ``vault.db`` is the attacker's)."""
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "office/firewall", "note", {"text": "s3cr3t-value"})
    finally:
        v.close()
    return vdir, vdir.env()


def _assert_one_line(result, code: int = 6) -> str:
    out = result.stdout + result.stderr
    assert result.returncode == code, (result.returncode, out)
    assert "Traceback" not in out and "internal error" not in out, out
    assert code == 0 or "s3cr3t-value" not in out, out
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 1, result.stderr
    return lines[0] if lines else ""


def _commands(vdir, env):
    """``secret get`` through the console script (its click-free fast path) and through click,
    ``audit verify``, ``doctor``."""
    yield (
        "secret get (fast path)",
        run_cli("secret", "get", "acme", "office/firewall", env=env, module="cli.launcher"),
    )
    yield "secret get", run_cli("secret", "get", "acme", "office/firewall", "--json", env=env)
    yield "audit verify", run_cli("audit", "verify", env=env)
    yield "doctor", run_cli("doctor", env=env)


def _assert_alarm_everywhere(vdir, env) -> None:
    for name, result in _commands(vdir, env):
        if name == "doctor":
            _assert_one_line(result)
            assert "PROBLEM  audit: integrity alarm" in result.stdout, result.stdout
        else:
            line = _assert_one_line(result)
            assert "integrity alarm" in line and "first bad entry 1;" in line, (name, line)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_audit_mark_is_the_integrity_alarm_for_every_command(acme, case):
    vdir, env = acme
    _plant(vdir, hwm.MARK_KEY, *MALFORMED[case])
    _assert_alarm_everywhere(vdir, env)


@pytest.mark.parametrize("case", sorted(OF_THE_MARK))
def test_the_mark_s_own_bytes_edited_are_the_integrity_alarm(acme, case):
    vdir, env = acme
    _sql(vdir, f"UPDATE meta SET value = {OF_THE_MARK[case]} WHERE key = ?", (hwm.MARK_KEY,))
    _assert_alarm_everywhere(vdir, env)


@pytest.fixture(scope="module")
def keyring(vault_template, tmp_path_factory):
    """An unsealed keyring of a copy of the template vault (open for the module's tests)."""
    v = copy_vault(vault_template, tmp_path_factory.mktemp("keyring")).open()
    yield v.ctx.keyring
    v.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=True),
        st.text(max_size=300),
        st.binary(max_size=300),
        st.binary(min_size=142, max_size=142),
        st.binary(min_size=140, max_size=140),
    )
)
def test_the_mark_decoder_answers_a_mark_or_the_alarm_for_any_stored_value(keyring, value):
    """Whatever SQLite hands back for ``meta.value`` (INTEGER, REAL, TEXT, BLOB), the decoder
    raises the alarm (exit 6) and nothing else."""
    with pytest.raises(AuditAlarm) as raised:
        hwm.decode_stored(keyring, value)
    assert raised.value.exit_code == 6 and raised.value.first_bad_seq == 1


# --- the other meta values -----------------------------------------------------------------------

#: (key, value case) of the other decoders, and the commands each must end with exit 6 (the
#: others may succeed: what they read does not include the row)
OTHERS = {
    "audit_public_key": (
        ("json_list", "huge_integer", "real", "non_utf8_text", "empty_blob"),
        ("audit verify",),
    ),
    "audit_private_sealed": (
        ("json_list", "huge_integer", "negative_integer", "empty_text", "empty_blob"),
        ("audit verify", "doctor"),
    ),
    "settings": (
        ("json_list", "json_null", "integer", "real", "empty_text", "non_utf8_text", "short_blob"),
        ("secret get (fast path)", "secret get", "audit verify", "doctor"),
    ),
    "last_sweep": (("json_list", "json_dict_wrong_types", "huge_integer", "real", "short_blob"), ("doctor",)),
    "custody_migrated_at": (("json_number", "max_integer", "real", "negative_integer"), ("custody show",)),
    "custody_format": (("json_number", "huge_integer", "real", "short_blob"), ("secret get", "doctor")),
}


@pytest.mark.parametrize(
    ("key", "case"), [(key, case) for key, (cases, _) in sorted(OTHERS.items()) for case in cases]
)
def test_a_malformed_meta_value_is_one_line_and_exit_6(acme, key, case):
    vdir, env = acme
    _plant(vdir, key, *MALFORMED[case])
    must_fail = OTHERS[key][1]
    results = dict(_commands(vdir, env))
    results["custody show"] = run_cli("custody", "show", env=env)
    for name, result in results.items():
        code = 6 if name in must_fail else result.returncode
        if name == "doctor":
            _assert_one_line(result, code)
        else:
            _assert_one_line(result, code)
            assert result.returncode in (0, 6), (name, result.returncode, result.stderr)


@pytest.mark.parametrize("case", ["json_list", "json_dict_wrong_types", "real", "short_blob"])
def test_an_edited_sweep_record_is_reported_by_doctor_and_written_anew_by_the_next_sweep(acme, case):
    vdir, env = acme
    _plant(vdir, "last_sweep", *MALFORMED[case])
    result = run_cli("doctor", env=env)
    _assert_one_line(result)
    assert (
        "PROBLEM  sweep: integrity failure: meta row last_sweep is not a value cvault stored" in result.stdout
    )
    swept = run_cli("sla", "sweep", env=env)
    assert swept.returncode == 0, swept.stderr
    assert "sweep:" not in run_cli("doctor", env=env).stdout.split("warning")[0]


def test_the_decoders_refuse_by_type_never_by_a_conversion():
    from vault import settings as vault_settings
    from vault.store import meta

    for bad in ("1", 1.0, b"\x01", True, -1, meta.MAX_EPOCH + 1):
        with pytest.raises(IntegrityFailure):
            meta.epoch("custody_migrated_at", bad)
    for bad in ("1", 1.0, b"\x01", 0, 256):
        with pytest.raises(IntegrityFailure):
            meta.custody_format(bad)
    assert meta.custody_format(1) == 1 and meta.custody_format(None) is None
    for bad in ("[]", '"x"', "1", b"{}", 5, '{"run_at": "1"}', '{"run_ok": 1}', '{"other": 1}'):
        with pytest.raises(IntegrityFailure):
            meta.last_sweep(bad)
    assert meta.last_sweep('{"ok_at": 5, "run_ok": true}') == {"ok_at": 5, "run_ok": True}
    for bad in ("[]", "null", "1", b"{}", 5, 1.5, "{"):
        with pytest.raises(IntegrityFailure):
            vault_settings.decode_stored(bad)
    assert vault_settings.decode_stored(None) == {} and vault_settings.decode_stored('{"a": 1}') == {"a": 1}
