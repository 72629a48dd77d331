"""Validation of names users type: clients, record paths, users. No heavy imports (hot path)."""

from __future__ import annotations

import re

from vault.errors import InvalidInput

# matched with fullmatch (issue 11: "$" also matches before a trailing newline, so "carl\n" was a
# second user); a client name neither starts nor ends with a space ("acme " is not another client)
CLIENT_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?"
USER_NAME = r"[a-z][a-z0-9._-]{0,31}"
PATH_SEGMENT = r"[A-Za-z0-9@+=,_-][A-Za-z0-9 @+=,._-]{0,63}"
#: a whole record path: 1-8 segments joined by '/' (a segment cannot start with '.', so '.' and
#: '..' never match); one match per path instead of one per segment (bulk import)
RECORD_PATH = rf"{PATH_SEGMENT}(?:/{PATH_SEGMENT}){{0,7}}"
MAX_PATH = 256
#: each pattern is compiled when first used: a command compiles only the ones it checks
#: (``secret get``: none of the user ones; docs/performance.md)
_COMPILED: dict[str, re.Pattern[str]] = {}


def _fullmatch(pattern: str, text: str) -> bool:
    compiled = _COMPILED.get(pattern)
    if compiled is None:
        compiled = _COMPILED[pattern] = re.compile(pattern)
    return compiled.fullmatch(text) is not None


def _printable(text: str) -> bool:
    return text.isprintable()  # each character printable (the empty string too), in one C loop


def client_name(name: str) -> str:
    if not isinstance(name, str) or not _printable(name) or not _fullmatch(CLIENT_NAME, name):
        raise InvalidInput("invalid client name: 1-64 letters, digits, space, '.', '_' or '-'")
    return name


def user_name(name: str) -> str:
    if not isinstance(name, str) or not _fullmatch(USER_NAME, name):
        raise InvalidInput(
            "invalid user name: 1-32 lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    return name


def team_name(name: str) -> str:
    """A team: like a user name (``noc``, ``service-desk``)."""
    if not isinstance(name, str) or not _fullmatch(USER_NAME, name):
        raise InvalidInput(
            "invalid team name: 1-32 lower-case letters, digits, '.', '_' or '-', starting with a letter"
        )
    return name


def record_path(path: str) -> str:
    """``office/firewall``: 1-8 segments, each 1-64 printable characters; no '.', '..' or empty."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH or not _printable(path):
        raise InvalidInput("invalid record path: 1-256 printable characters like office/firewall")
    if not _fullmatch(RECORD_PATH, path):
        raise InvalidInput(
            "invalid record path: segments of letters, digits, ' @+=,._-' "
            "separated by '/', no empty, '.' or '..' segment"
        )
    return path
