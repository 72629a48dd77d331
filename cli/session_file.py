"""The session token file: where ``cvault login`` leaves the bearer token for later commands.

Location: ``CVAULT_SESSION_FILE`` if set (read without importing platformdirs: the ``secret get``
hot path), else ``session.json`` in the platform's user config folder (``platformdirs``,
imported lazily). The file is created 0600 in a 0700 folder and holds JSON
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


def session_file() -> str:
    """Where the session file is (a string: ``secret get`` never loads pathlib)."""
    env = os.environ.get("CVAULT_SESSION_FILE")
    if env:
        return os.path.expanduser(env)
    import platformdirs  # only without CVAULT_SESSION_FILE

    return os.path.join(platformdirs.user_config_dir("cvault", appauthor=False), FILE_NAME)


def session_path() -> Path:
    from pathlib import Path

    return Path(session_file())


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
    from vault.home import write_private_file

    path = session_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps({"vault_id": vault_id, "user": user, "token": token, "expires_at": expires_at}).encode()
    write_private_file(path, data)
    return path


def remove_token() -> bool:
    try:
        session_path().unlink()
        return True
    except FileNotFoundError:
        return False
