"""The session token file: where ``cvault login`` leaves the bearer token for later commands.

Location: ``CVAULT_SESSION_FILE`` if set (read without importing platformdirs: the ``secret get``
hot path), else ``session.json`` in the platform's user config folder (``platformdirs``,
imported lazily); with a profile (``--profile NAME`` / ``CVAULT_PROFILE``)
``session-NAME.json`` in the same folder, so that each profile keeps its own session. The file
is created 0600 in a 0700 folder and holds JSON
``{"vault_id", "user", "token", "expires_at"}``; the vault id makes a token from another vault fail
cleanly ("not logged in to this vault") instead of being sent to the wrong vault. The vault itself
stores only the token's SHA-256 (docs/identity.md).
"""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

from vault.errors import AuthenticationFailed

if TYPE_CHECKING:
    from pathlib import Path

FILE_NAME = "session.json"
#: a profile name: letters, digits, ``.``, ``_``, ``-`` (it becomes part of a file name)
_PROFILE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def profile() -> str | None:
    """The session profile: ``--profile NAME`` (which sets ``CVAULT_PROFILE`` for the command)
    or ``CVAULT_PROFILE``; None for the default session."""
    name = os.environ.get("CVAULT_PROFILE") or None
    if name is not None:
        check_profile(name)
    return name


def check_profile(name: str) -> str:
    from vault.errors import InvalidInput

    if not 1 <= len(name) <= 64 or not set(name) <= _PROFILE_CHARS or name.startswith("."):
        raise InvalidInput("a profile name is 1-64 letters, digits, '.', '_' or '-' (not starting with '.')")
    return name


def session_file() -> str:
    """Where the session file is (a string: ``secret get`` never loads pathlib): with a profile,
    ``session-NAME.json`` in the folder of the default one (one session per profile)."""
    env = os.environ.get("CVAULT_SESSION_FILE")
    if env:
        path = os.path.expanduser(env)
    else:
        import platformdirs  # only without CVAULT_SESSION_FILE

        path = os.path.join(platformdirs.user_config_dir("cvault", appauthor=False), FILE_NAME)
    name = profile()
    return path if name is None else os.path.join(os.path.dirname(path), f"session-{name}.json")


def session_path() -> Path:
    from pathlib import Path

    return Path(session_file())


def session_user(vault_id: str) -> tuple[str | None, str | None]:
    """``(user, expires_at)`` of the session file's session for this vault, or ``(None, None)``
    when there is none (no file, another vault, unreadable): what ``login`` would replace."""
    try:
        with open(session_file(), encoding="utf-8") as fh:
            doc = json.loads(fh.read())
    except (OSError, ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict) or doc.get("vault_id") != vault_id or not isinstance(doc.get("user"), str):
        return None, None
    expires = doc.get("expires_at")
    return doc["user"], expires if isinstance(expires, str) else None


def load_token(vault_id: str) -> tuple[str | None, str | None]:
    """(token, None) for this vault, or (None, why not) when there is no usable session file."""
    path = session_file()
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise AuthenticationFailed(
                f"session file {path} is accessible by other users: delete it and run cvault login NAME"
            )
        with open(path, encoding="utf-8") as fh:
            doc = json.loads(fh.read())
    except FileNotFoundError:
        return None, "not logged in: run cvault login NAME"
    except (OSError, ValueError, UnicodeDecodeError):
        return None, f"not logged in (unreadable session file {path}): run cvault login NAME"
    if not isinstance(doc, dict) or not isinstance(doc.get("token"), str):
        return None, f"not logged in (unreadable session file {path}): run cvault login NAME"
    if doc.get("vault_id") != vault_id:
        return (
            None,
            "not logged in to this vault (the session file belongs to another vault): run cvault login NAME",
        )
    return doc["token"], None


def save_token(vault_id: str, user: str, token: str, expires_at: str) -> Path:
    from cli.agent_protocol import is_private_folder
    from vault.errors import InsecurePermissions
    from vault.home import write_private_file

    path = session_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not is_private_folder(str(path.parent), others=0o022):
        # another user could swap the file under us (review R8): the token is never written there
        raise InsecurePermissions(
            f"refusing to write the session file in {path.parent}: the folder is not owned by this user"
            " or others may write it (chmod 700 it, or set CVAULT_SESSION_FILE)"
        )
    data = json.dumps({"vault_id": vault_id, "user": user, "token": token, "expires_at": expires_at}).encode()
    write_private_file(path, data)
    return path


def remove_token() -> bool:
    try:
        session_path().unlink()
        return True
    except FileNotFoundError:
        return False
