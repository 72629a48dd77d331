"""TOTP seeds in records (issue 16): validation, and ``secrets.otp`` matching RFC 6238 Appendix B
for seeds given as base32 and as ``otpauth://`` URIs (SHA1, SHA256, SHA512; 6 and 8 digits)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from urllib.parse import quote

import pytest

from tests.helpers import add_client, make_vault, operator
from vault.clock import UTC, FixedClock
from vault.errors import InvalidInput
from vault.records import otp

# RFC 6238 Appendix B: the seeds are the ASCII strings below, the codes 8 digits
RFC_SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC_VECTORS = [  # (unix time, algorithm, code)
    (59, "SHA1", "94287082"),
    (59, "SHA256", "46119246"),
    (59, "SHA512", "90693936"),
    (1111111109, "SHA1", "07081804"),
    (1111111109, "SHA256", "68084774"),
    (1111111109, "SHA512", "25091201"),
    (1234567890, "SHA1", "89005924"),
    (1234567890, "SHA256", "91819424"),
    (1234567890, "SHA512", "93441116"),
    (2000000000, "SHA1", "69279037"),
    (2000000000, "SHA256", "90698825"),
    (2000000000, "SHA512", "38618901"),
]


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    clock = FixedClock(datetime.fromtimestamp(59, UTC))
    vd = make_vault(tmp_path_factory.mktemp("otp"), clock=FixedClock(datetime(2026, 6, 1, tzinfo=UTC)))
    v = vd.open(clock=FixedClock(datetime(2026, 6, 1, tzinfo=UTC)))
    add_client(v, "acme", days=365 * 40)
    v.ctx.clock = clock
    yield v
    v.close()


@pytest.mark.parametrize(("when", "algorithm", "code"), RFC_VECTORS)
def test_otp_matches_rfc6238_for_uris(vault, when, algorithm, code):
    uri = f"otpauth://totp/acme:admin?secret={b32(RFC_SEEDS[algorithm])}&algorithm={algorithm}&digits=8"
    path = f"otp/{algorithm}/{when}"
    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    vault.secrets.put(operator(), "acme", path, "account", {"username": "admin", "totp": uri})
    vault.ctx.clock.set(datetime.fromtimestamp(when, UTC))
    got = vault.secrets.otp(operator(), "acme", path)
    assert got["code"] == code and got["digits"] == 8 and got["algorithm"] == algorithm
    assert got["seconds_left"] == 30 - when % 30


@pytest.mark.parametrize(("when", "code"), [(59, "287082"), (1111111109, "081804"), (2000000000, "279037")])
def test_otp_for_a_bare_base32_seed_is_sha1_six_digits(vault, when, code):
    seed = " ".join(b32(RFC_SEEDS["SHA1"]).lower()[i : i + 4] for i in range(0, 32, 4))  # as apps print it
    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    path = f"otp/bare/{when}"
    vault.secrets.put(operator(), "acme", path, "access", {"password": "x", "totp": seed})
    vault.ctx.clock.set(datetime.fromtimestamp(when, UTC))
    got = vault.secrets.otp(operator(), "acme", path)
    assert got["code"] == code and got["digits"] == 6
    assert vault.secrets.get(operator(), "acme", path).fields["totp"] == seed  # stored exactly as given


@pytest.mark.parametrize(
    "bad",
    [
        "not base32!",
        "JBSWY3DP",  # 40 bits: too short
        "otpauth://hotp/x?secret=JBSWY3DPEHPK3PXPJBSWY3DP",
        "otpauth://totp/x?secret=JBSWY3DPEHPK3PXPJBSWY3DP&algorithm=MD5",
        "otpauth://totp/x?secret=JBSWY3DPEHPK3PXPJBSWY3DP&digits=9",
        "otpauth://totp/x?secret=JBSWY3DPEHPK3PXPJBSWY3DP&period=0",
        "otpauth://totp/x?algorithm=SHA1",
    ],
)
def test_bad_seeds_are_refused_without_echoing_them(vault, bad):
    with pytest.raises(InvalidInput) as refused:
        vault.secrets.put(operator(), "acme", "otp/bad", "account", {"username": "u", "totp": bad})
    assert "totp" in refused.value.message
    assert quote(bad) not in refused.value.message and bad not in refused.value.message


def test_otp_is_an_audited_read_and_needs_a_seed(vault):
    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    vault.secrets.put(operator(), "acme", "otp/none", "account", {"username": "u"})
    with pytest.raises(InvalidInput, match="no totp seed"):
        vault.secrets.otp(operator(), "acme", "otp/none")
    rows = vault.ctx.db.all("SELECT action FROM audit_events WHERE action = 'secret.get' ORDER BY seq DESC")
    assert rows


def test_parse_defaults_and_uri_parameters():
    assert otp.parse("JBSWY3DPEHPK3PXPJBSWY3DP") == otp.OtpParams("JBSWY3DPEHPK3PXPJBSWY3DP", "SHA1", 6, 30)
    uri = "otpauth://totp/a?secret=jbswy3dpehpk3pxpjbswy3dp&period=60&digits=7&algorithm=sha512"
    assert otp.parse(uri) == otp.OtpParams("JBSWY3DPEHPK3PXPJBSWY3DP", "SHA512", 7, 60)


def _reference_code(raw: bytes, when: int, algorithm: str, digits: int, period: int = 30) -> str:
    """RFC 4226 section 5.3 / RFC 6238 section 4, written out independently of pyotp."""
    import hashlib
    import hmac
    import struct

    mac = hmac.new(raw, struct.pack(">Q", when // period), getattr(hashlib, algorithm.lower())).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


@pytest.mark.parametrize(("when", "algorithm", "code"), RFC_VECTORS)
def test_otp_six_digit_uris_match_rfc6238(vault, when, algorithm, code):
    uri = f"otpauth://totp/acme:admin?secret={b32(RFC_SEEDS[algorithm])}&algorithm={algorithm}&digits=6"
    path = f"otp6/{algorithm}/{when}"
    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    vault.secrets.put(operator(), "acme", path, "access", {"password": "x", "totp": uri})
    vault.ctx.clock.set(datetime.fromtimestamp(when, UTC))
    got = vault.secrets.otp(operator(), "acme", path)
    assert got["code"] == code[-6:] and got["digits"] == 6


@pytest.mark.parametrize("bits", [80, 96, 104, 112, 128, 160])
@pytest.mark.parametrize(("algorithm", "digits"), [("SHA1", 6), ("SHA256", 8), ("SHA512", 8)])
def test_every_seed_a_write_accepts_gives_a_code(vault, bits, algorithm, digits):
    """The bug: seeds of 80-111 bits were accepted by put/edit, then pyotp (which wants 112)
    raised ValueError on ``--otp``: an internal error (HTTP 500 in service mode)."""
    raw = bytes(range(1, bits // 8 + 1))
    path = f"otp/short/{bits}/{algorithm}"
    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    if algorithm == "SHA1":  # a bare seed, given by edit (the path of the bug report)
        vault.secrets.put(operator(), "acme", path, "account", {"username": "admin"})
        vault.secrets.edit(operator(), "acme", path, set_fields={"totp": b32(raw)})
    else:
        uri = f"otpauth://totp/x?secret={b32(raw)}&algorithm={algorithm}&digits={digits}"
        vault.secrets.put(operator(), "acme", path, "account", {"username": "admin", "totp": uri})
    for when in (59, 1111111109, 2000000000):
        vault.ctx.clock.set(datetime.fromtimestamp(when, UTC))
        got = vault.secrets.otp(operator(), "acme", path)
        assert got["code"] == _reference_code(raw, when, algorithm, digits)


def test_a_stored_seed_that_cannot_give_a_code_is_one_clear_line(vault):
    """A seed stored under other rules (an older build, a hand-made import) is refused with one
    line naming the record, never an internal error, and never echoing the seed."""
    from vault.records.service import _PreparedWrite

    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    client = vault.ctx.client("acme")
    for n, seed in enumerate(
        ["JBSWY3DP", "not base32!", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=9"]
    ):
        fields = {"username": "u", "totp": seed}
        doc = json.dumps({"kind": "account", "fields": fields}, separators=(",", ":")).encode()
        with vault.ctx.db.write() as conn:  # past validation, as an older build could have
            vault.secrets._write(
                conn, operator(), client, _PreparedWrite(f"otp/old/{n}", "account", doc, fields), durable=True
            )
        with pytest.raises(InvalidInput) as refused:
            vault.secrets.otp(operator(), "acme", f"otp/old/{n}")
        assert refused.value.message.startswith(f"acme/otp/old/{n}: the stored totp seed cannot give a code")
        assert seed not in refused.value.message and "\n" not in refused.value.message
