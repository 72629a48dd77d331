"""The password generator (``secret put|edit --generate``, ``cvault generate``): :mod:`secrets`.

Policy per kind (docs/cli.md, "Generated passwords"): 24 characters by default (8-128 allowed);
``full`` (letters, digits and punctuation; at least one of each class) for account and access
passwords; ``alnum`` for a network's ``wifi_key`` (typed on phones and printers; WPA2 takes 8-63
characters, so at most 63); notes are not generated. Each character is drawn uniformly by
``secrets.choice``; a draw missing a required class is drawn again (rejection, no bias towards
positions).
"""

from __future__ import annotations

from vault.errors import InvalidInput

DEFAULT_LENGTH = 24
MIN_LENGTH, MAX_LENGTH = 8, 128
#: punctuation without quotes, backslash and backtick (they break shells and config files)
SYMBOLS = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
# spelled out rather than taken from :mod:`string`: the CLI imports these names for its options
# on every ``secret`` command, ``secret get`` included, and ``secrets`` (with hmac, _hashlib and
# random) loads only when a password is generated
_LOWER, _UPPER, _DIGITS = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
CHARSETS: dict[str, tuple[str, ...]] = {
    "full": (_LOWER, _UPPER, _DIGITS, SYMBOLS),
    "alnum": (_LOWER, _UPPER, _DIGITS),
    "digits": (_DIGITS,),
    "hex": ("0123456789abcdef",),
}
#: the charset used for each kind's main secret when none is given
KIND_CHARSET = {"account": "full", "access": "full", "network": "alnum"}
#: longest value a kind's main secret may take (WPA2 passphrase: 63)
KIND_MAX = {"network": 63}


def generate(length: int = DEFAULT_LENGTH, charset: str = "full") -> str:
    """A random password of ``length`` characters from ``charset``, one of each class in it."""
    classes = CHARSETS.get(charset)
    if classes is None:
        raise InvalidInput(f"unknown charset {charset!r}: use one of {', '.join(CHARSETS)}")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InvalidInput(f"--length must be {MIN_LENGTH}-{MAX_LENGTH}")
    import secrets

    alphabet = "".join(classes)
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in cls for c in value) for cls in classes):
            return value


def for_kind(kind: str, length: int | None = None, charset: str | None = None) -> str:
    """The generated main secret of a record of ``kind`` (the policy above)."""
    if kind not in KIND_CHARSET:
        raise InvalidInput(f"--generate makes passwords; a {kind} record has none")
    length = DEFAULT_LENGTH if length is None else length
    if length > KIND_MAX.get(kind, MAX_LENGTH):
        raise InvalidInput(f"a {kind} record's secret is at most {KIND_MAX[kind]} characters")
    return generate(length, charset or KIND_CHARSET[kind])
