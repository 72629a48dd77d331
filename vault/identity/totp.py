"""RFC 6238 TOTP verification with an injected time (STYLE habit 7).

pyotp computes the codes; this module decides which time steps are acceptable. pyotp is imported
only when a code is generated or checked, so the ``secret get`` path with a fresh step-up never
loads it. pyotp is never allowed to read the wall clock: every call passes the time explicitly.

Rules (docs/spec.md §5): 30-second step, 6 digits, HMAC-SHA1 (what authenticator apps implement), and one
step of drift either way (RFC 6238 section 5.2 recommends at most one step of network delay).
:func:`match_step` returns the *time step* that matched, so the caller can refuse a step that was
already accepted for the same user (the replay rule).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

from vault import crypto

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
ISSUER = "cvault"
SECRET_BYTES = 20  # 160 bits: the HMAC-SHA1 key length RFC 4226 section 4 recommends

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def new_secret() -> str:
    """A fresh base32 TOTP secret (no padding, as authenticator apps expect)."""
    return base64.b32encode(crypto.random_bytes(SECRET_BYTES)).decode().rstrip("=")


def base32_secret(raw: bytes) -> str:
    """Base32 form of a raw seed (the RFC 6238 test seeds are given as ASCII bytes)."""
    return base64.b32encode(raw).decode().rstrip("=")


def _epoch(when: datetime | int | float) -> int:
    return int(when.timestamp()) if isinstance(when, datetime) else int(when)


def time_step(when: datetime | int | float, step: int = STEP_SECONDS) -> int:
    return _epoch(when) // step


_SEED_CLASSES: dict[int, type] = {}  # pyotp.TOTP subclasses by minimum secret length


def _otp(secret: str, digits: int, step: int, digest: str, min_secret_bits: int | None = None):
    import pyotp  # lazily: only when a code is checked or generated

    cls: type[pyotp.TOTP] = pyotp.TOTP
    if min_secret_bits is not None:
        # pyotp refuses secrets under 112 bits (its ``min_secret_length_bits``, the documented
        # hook for subclasses); a record's seed is a client account's, issued by someone else, and
        # as short as 80 bits (vault.records.otp), so its codes are computed with that minimum
        if min_secret_bits not in _SEED_CLASSES:
            _SEED_CLASSES[min_secret_bits] = type(
                "SeedTOTP", (pyotp.TOTP,), {"min_secret_length_bits": min_secret_bits}
            )
        cls = _SEED_CLASSES[min_secret_bits]
    return cls(secret, digits=digits, interval=step, digest=_DIGESTS[digest])


def code_at(
    secret: str,
    when: datetime | int | float,
    *,
    digits: int = DIGITS,
    step: int = STEP_SECONDS,
    digest: str = "sha1",
    min_secret_bits: int | None = None,
) -> str:
    """The code for the step containing ``when`` (records' seeds, tests, the demo).

    ``min_secret_bits``: the shortest secret accepted (default: pyotp's); raises ValueError for a
    secret pyotp cannot use (the message never holds the secret)."""
    return _otp(secret, digits, step, digest, min_secret_bits).generate_otp(time_step(when, step))


def well_formed(code: str, digits: int = DIGITS) -> bool:
    return isinstance(code, str) and len(code) == digits and code.isascii() and code.isdigit()


def match_step(
    secret: str,
    code: str,
    when: datetime | int | float,
    *,
    digits: int = DIGITS,
    step: int = STEP_SECONDS,
    drift: int = DRIFT_STEPS,
    digest: str = "sha1",
) -> int | None:
    """The time step within ``drift`` steps of ``when`` whose code is ``code``, or None.

    Every candidate is computed and compared in constant time (no early exit that would tell
    which step matched through timing). A malformed code matches nothing."""
    if not well_formed(code, digits):
        return None
    otp = _otp(secret, digits, step, digest)
    now_step = time_step(when, step)
    matched = None
    for candidate in range(now_step - drift, now_step + drift + 1):
        if candidate < 0:
            continue
        if crypto.constant_time_equal(otp.generate_otp(candidate), code) and matched is None:
            matched = candidate
    return matched


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The Key URI an authenticator app reads, with every parameter spelled out:
    ``otpauth://totp/ISSUER:NAME?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30``.

    ``issuer`` is the vault's (its name unless configured: two vaults give two entries in the
    app); it appears in the label and as the parameter, both percent-encoded."""
    from urllib.parse import quote

    label = quote(issuer, safe="") + ":" + quote(account, safe="")
    query = f"secret={secret}&issuer={quote(issuer, safe='')}"
    query += f"&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    return f"otpauth://totp/{label}?{query}"


def secret_from_uri(uri: str) -> str:
    """The base32 secret of an otpauth URI (the demo and tests compute codes from it)."""
    from urllib.parse import parse_qs, urlparse

    return parse_qs(urlparse(uri).query)["secret"][0]
