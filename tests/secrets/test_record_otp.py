"""TOTP seeds in records (issue 16): validation, and ``secrets.otp`` matching RFC 6238 Appendix B
for seeds given as base32 and as ``otpauth://`` URIs (SHA1, SHA256, SHA512; 6 and 8 digits)."""

from __future__ import annotations

import base64
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


def _rfc4226(raw: bytes, counter: int, digits: int = 6) -> str:
    import hashlib
    import hmac

    mac = hmac.new(raw, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return str((int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF) % 10**digits).zfill(digits)


@pytest.mark.parametrize("raw", [b"1234567890", b"12345678901234"])  # 80 and 112 bits
def test_otp_for_the_shortest_seeds_accepted(vault, raw):
    """80-bit seeds (Google Authenticator's own examples) are accepted and give their code; pyotp
    >= 2.10 refuses under 112 bits by default, which was an "internal error: ValueError"."""
    vault.ctx.clock.set(datetime(2026, 6, 1, tzinfo=UTC))
    path = f"otp/short/{len(raw)}"
    vault.secrets.put(operator(), "acme", path, "account", {"username": "admin", "totp": b32(raw)})
    vault.ctx.clock.set(datetime.fromtimestamp(1234567890, UTC))
    assert vault.secrets.otp(operator(), "acme", path)["code"] == _rfc4226(raw, 1234567890 // 30)
