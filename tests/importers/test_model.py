"""The neutral model: path sanitising and de-duplication, TOTP validation, canonical bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import InvalidInput
from vault.importers import Attachment, CustomField, ImportedRecord, keyed_fingerprint
from vault.importers.paths import PathAllocator, sanitize_segment
from vault.importers.totp import classify_totp, validate_totp
from vault.names import record_path


@pytest.mark.parametrize(
    ("title", "path"),
    [
        ("Firewall admin", "Firewall admin"),
        ("Büro Drucker", "Buro Drucker"),
        ("ﬁle server", "file server"),
        ("a/b\\c", "a-b-c"),
        ("  .hidden  ", "hidden"),
        ("Server 1 - DC", "Server 1-DC"),
        ("tabs\tand\nnewlines", "tabs and newlines"),
        ("💾 Backup 💾", "Backup"),
        ("x" * 100, "x" * 64),
        ("", "untitled"),
        ("@admin", "@admin"),
        ("...", "item-" + "a" * 0),  # checked by prefix below
    ],
)
def test_sanitize_segment(title, path):
    got = sanitize_segment(title)
    if title == "...":
        assert got.startswith("item-") and len(got) == 15
    else:
        assert got == path
    record_path(got)


def test_non_latin_titles_get_distinct_stable_paths():
    arabic, hebrew, emoji = sanitize_segment("مرحبا"), sanitize_segment("שלום"), sanitize_segment("🔥🔥")
    assert len({arabic, hebrew, emoji}) == 3
    assert all(p.startswith("item-") for p in (arabic, hebrew, emoji))
    assert sanitize_segment("مرحبا") == arabic


@given(st.text(max_size=200))
def test_any_title_becomes_a_valid_path(title):
    allocator = PathAllocator()
    first, _ = allocator.allocate(title)
    second, reason = allocator.allocate(title)
    record_path(first)
    record_path(second)
    assert first.lower() != second.lower() and reason is not None and "duplicate" in reason


def test_allocator_suffixes_stay_within_64_characters():
    allocator = PathAllocator()
    paths = [allocator.allocate("y" * 80)[0] for _ in range(12)]
    assert len({p.lower() for p in paths}) == 12
    assert all(len(p) <= 64 for p in paths)
    assert paths[1].endswith("-2") and paths[11].endswith("-12")


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        ("JBSWY3DPEHPK3PXP", "totp"),
        ("jbsw y3dp ehpk 3pxp", "totp"),
        ("JBSWY3DPEHPK3PXP====", "totp"),
        ("JBSWY3DP", "invalid"),  # 40 bits
        ("JBSWY3DPEHPK3PX1", "invalid"),  # '1' is not base32
        ("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&issuer=A", "totp"),
        ("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&algorithm=SHA512&digits=8&period=60", "totp"),
        ("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&algorithm=MD5", "invalid"),
        ("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&digits=10", "invalid"),
        ("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&period=0", "invalid"),
        ("otpauth://totp/A:b?issuer=A", "invalid"),
        ("otpauth://hotp/A:b?secret=JBSWY3DPEHPK3PXP&counter=0", "other"),
        ("steam://JBSWY3DPEHPK3PXP", "other"),
        ("https://example.com", "invalid"),
    ],
)
def test_totp_classification(value, verdict):
    assert classify_totp(value) == verdict
    if verdict == "totp":
        assert validate_totp(value) == value
    else:
        with pytest.raises(InvalidInput) as err:
            validate_totp(value)
        assert value not in str(err.value)


def _record(**overrides):
    values = dict(
        index=1,
        source_id="x",
        title="Router",
        client_hint="Acme",
        path="Router",
        kind="access",
        fields={"username": "admin", "password": "pw"},
        custom_fields=(CustomField("pin", "1234", True), CustomField("serial", "S1", False)),
        tags=("b", "a"),
        totp="JBSWY3DPEHPK3PXP",
        attachments=(Attachment("cfg", b"\x00\x01"),),
    )
    values.update(overrides)
    return ImportedRecord(**values)


def test_canonical_bytes_cover_content_not_location():
    base = _record()
    assert base.canonical_bytes().startswith(b"cvault-import-record-v1\n")
    # where a record goes or came from is not its content
    moved = _record(index=7, source_id="y", title="Router (old)", client_hint="Globex", path="r2")
    assert moved.canonical_bytes() == base.canonical_bytes()
    # order of custom fields and tags is not content either
    reordered = _record(custom_fields=tuple(reversed(base.custom_fields)), tags=("a", "b"))
    assert reordered.canonical_bytes() == base.canonical_bytes()
    for changed in (
        _record(fields={"username": "admin", "password": "pw2"}),
        _record(custom_fields=(CustomField("pin", "1234", False), CustomField("serial", "S1", False))),
        _record(tags=("a",)),
        _record(totp=None),
        _record(attachments=(Attachment("cfg", b"\x00\x02"),)),
        _record(kind="account", fields={"username": "admin", "password": "pw"}),
    ):
        assert changed.canonical_bytes() != base.canonical_bytes()


def test_keyed_fingerprint_needs_a_real_key_and_depends_on_it():
    record = _record()
    with pytest.raises(ValueError, match="at least 32 bytes"):
        keyed_fingerprint(record, b"short")
    a, b = keyed_fingerprint(record, b"k" * 32), keyed_fingerprint(record, b"j" * 32)
    assert a != b and len(a) == 32
    assert keyed_fingerprint(_record(path="elsewhere"), b"k" * 32) == a


def test_repr_never_shows_secrets():
    text = repr(
        _record(fields={"username": "admin", "password": "Hunter2-secret"}, totp="JBSWY3DPEHPK3PXPSEED")
    )
    assert "Hunter2-secret" not in text and "JBSWY3DPEHPK3PXPSEED" not in text and "1234" not in text
    assert "admin" in text and "serial" in text


def test_record_fields_are_read_only():
    record = _record()
    with pytest.raises(TypeError):
        record.fields["password"] = "changed"  # type: ignore[index]
