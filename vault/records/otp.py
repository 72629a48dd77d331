"""A record's TOTP seed (the ``totp`` field of ``account`` and ``access``): parsing and validation.

A seed is stored exactly as given: a bare RFC 4648 base32 secret (spaces ignored, any case,
padding optional, at least 80 bits) or a Key Uri Format URI ``otpauth://totp/LABEL?secret=...``
with optional ``algorithm`` (SHA1, SHA256, SHA512), ``digits`` (6-8) and ``period`` (1-300 s).
The rules are those of :mod:`vault.importers.totp`, so whatever an import accepts, a record
accepts. :func:`parse` gives the parameters ``secret get --otp`` computes the RFC 6238 code with
(:func:`vault.identity.totp.code_at`, in the secrets service). Messages never echo the seed.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qs, urlsplit

from vault.errors import InvalidInput
from vault.tuples import NamedTuple

MIN_SECRET_BYTES = 10  # 80 bits
_BASE32 = re.compile(r"^[A-Z2-7]+=*$")
ALGORITHMS = ("SHA1", "SHA256", "SHA512")
BAD_SEED = "invalid totp: expected a base32 secret (at least 16 characters) or an otpauth://totp/ URI"


class OtpParams(NamedTuple):
    #: the base32 secret, upper case, without spaces or padding
    secret: str
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30


def _secret(text: str) -> str:
    compact = "".join(text.split()).upper()
    if not compact or not _BASE32.match(compact):
        raise InvalidInput(BAD_SEED)
    unpadded = compact.rstrip("=")
    try:
        raw = base64.b32decode(unpadded + "=" * (-len(unpadded) % 8))
    except (binascii.Error, ValueError):
        raise InvalidInput(BAD_SEED) from None
    if len(raw) < MIN_SECRET_BYTES:
        raise InvalidInput(BAD_SEED)
    return unpadded


def parse(value: str) -> OtpParams:
    """The code parameters of a seed or URI; InvalidInput (never naming the value) if unusable."""
    if not isinstance(value, str):
        raise InvalidInput(BAD_SEED)
    text = value.strip()
    if not text.lower().startswith("otpauth://"):
        return OtpParams(_secret(text))
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidInput(BAD_SEED) from None
    if parts.scheme.lower() != "otpauth" or parts.netloc.lower() != "totp":
        raise InvalidInput("invalid totp: only otpauth://totp/ URIs give a time-based code")
    query = parse_qs(parts.query, keep_blank_values=True)
    if any(len(v) != 1 for v in query.values()):
        raise InvalidInput("invalid totp: a URI parameter is repeated")
    params = {k.lower(): v[0] for k, v in query.items()}
    secret = _secret(params.get("secret", ""))
    algorithm = params.get("algorithm", "SHA1").upper()
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"invalid totp: algorithm must be one of {', '.join(ALGORITHMS)}")
    digits = params.get("digits", "6")
    if digits not in {"6", "7", "8"}:
        raise InvalidInput("invalid totp: digits must be 6, 7 or 8")
    period = params.get("period", "30")
    if not period.isdigit() or not 1 <= int(period) <= 300:
        raise InvalidInput("invalid totp: period must be 1-300 seconds")
    return OtpParams(secret, algorithm, int(digits), int(period))
