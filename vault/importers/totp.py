"""TOTP seeds from export files: a base32 secret or an ``otpauth://totp/`` URI (docs/import.md).

The value is kept exactly as the source wrote it (so it reads back byte-exact); validation only
decides whether a TOTP code can be computed from it:

- a bare secret: RFC 4648 base32 once spaces are removed and letters upper-cased (authenticator
  apps print seeds in groups of four, lower or upper case), padding optional, at least 80 bits
  (16 characters: the shortest seeds services issue; RFC 4226 section 4 asks for 128);
- a URI in the Key Uri Format of Google Authenticator: scheme ``otpauth``, type ``totp``, a valid
  ``secret`` as above, ``algorithm`` SHA1/SHA256/SHA512, ``digits`` 6-8, ``period`` 1-300 seconds
  when present (RFC 6238 section 5.2 recommends 30).

``hotp`` URIs and ``steam://`` seeds are not TOTP; :func:`classify_totp` tells the readers so that
they keep such values as secret custom fields instead of dropping them.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qs, quote, urlsplit

from vault.errors import InvalidInput

MIN_SECRET_BYTES = 10  # 80 bits
_BASE32 = re.compile(r"^[A-Z2-7]+=*$")
_ALGORITHMS = frozenset({"SHA1", "SHA256", "SHA512"})


def _secret_ok(secret: str) -> bool:
    compact = "".join(secret.split()).upper()
    if not compact or not _BASE32.match(compact):
        return False
    unpadded = compact.rstrip("=")
    try:
        raw = base64.b32decode(unpadded + "=" * (-len(unpadded) % 8))
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= MIN_SECRET_BYTES


def classify_totp(value: str) -> str:
    """``"totp"`` for a usable TOTP seed or URI, ``"other"`` for an OTP value cvault cannot compute
    (HOTP, Steam), ``"invalid"`` for anything else."""
    text = value.strip()
    lowered = text.lower()
    if lowered.startswith("steam://") or lowered.startswith("otpauth://hotp"):
        return "other"
    if lowered.startswith("otpauth://"):
        return "totp" if _uri_ok(text) else "invalid"
    return "totp" if _secret_ok(text) else "invalid"


def _uri_ok(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    if parts.scheme.lower() != "otpauth" or parts.netloc.lower() != "totp":
        return False
    query = parse_qs(parts.query, keep_blank_values=True)
    if any(len(v) != 1 for v in query.values()):
        return False
    params = {k.lower(): v[0] for k, v in query.items()}
    if not _secret_ok(params.get("secret", "")):
        return False
    if "algorithm" in params and params["algorithm"].upper() not in _ALGORITHMS:
        return False
    if "digits" in params and params["digits"] not in {"6", "7", "8"}:
        return False
    if "period" in params:
        period = params["period"]
        if not period.isdigit() or not 1 <= int(period) <= 300:
            return False
    return True


def validate_totp(value: str) -> str:
    """Return ``value`` unchanged if it is a usable TOTP seed or URI; raise InvalidInput (naming
    the problem, never the value) otherwise."""
    if not isinstance(value, str) or classify_totp(value) != "totp":
        raise InvalidInput(
            "invalid TOTP seed: expected a base32 secret (at least 16 characters) or an otpauth://totp/ URI"
        )
    return value


def seed_with_settings(seed: str, settings: str | None, label: str) -> str | None:
    """KeeTrayTOTP / KeePassXC legacy fields: ``TOTP Seed`` plus ``TOTP Settings`` ``"30;6"``
    (period;digits, documented by KeePassium "How to setup TOTP"). Returns the seed itself for the
    defaults, an ``otpauth://totp/`` URI carrying other settings, or ``None`` for settings cvault
    cannot compute (the Steam encoder ``"30;S"``)."""
    if not settings or settings.strip() in {"30;6", ""}:
        return seed
    period, _, digits = settings.strip().partition(";")
    if not period.isdigit() or digits not in {"6", "7", "8"}:
        return None
    compact = "".join(seed.split()).upper()
    return f"otpauth://totp/{quote(label, safe='')}?secret={compact}&period={int(period)}&digits={digits}"
