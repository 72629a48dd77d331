"""Shell completion of client names and record paths (``cvault completion bash|zsh|fish``).

Commands and options complete from the click tree. Client names and record paths come from a
short-lived cache: ``completion-PROFILE.json`` in the user's cache folder (``$XDG_CACHE_HOME/cvault``
or the platform's), 0600 in a 0700 folder, holding ``{"vault_id", "user", "written_at", "records":
{client: [paths]}}`` -- names and paths only, never a value. It is refilled (one ``secret list
--all`` as the logged-in user: audited, need-to-know now) when it is missing, older than
:data:`TTL_SECONDS` (``CVAULT_COMPLETION_TTL`` may shorten it), for another vault or user, and
``logout`` deletes it. A completion never prompts: without a usable session or unseal secret it
completes nothing. docs/cli.md "Shell completion".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TTL_SECONDS = 300


def ttl() -> int:
    try:
        wanted = int(os.environ.get("CVAULT_COMPLETION_TTL", TTL_SECONDS))
    except ValueError:
        wanted = TTL_SECONDS
    return max(0, min(TTL_SECONDS, wanted))


def cache_path() -> Path:
    from cli.session_file import profile

    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        folder = Path(base) / "cvault"
    else:
        import platformdirs

        folder = Path(platformdirs.user_cache_dir("cvault", appauthor=False))
    return folder / f"completion-{profile() or 'default'}.json"


def clear_cache() -> None:
    import contextlib

    with contextlib.suppress(OSError):
        cache_path().unlink()


def _read_cache() -> dict | None:
    path = cache_path()
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), dict):
        return None
    written = doc.get("written_at")
    if not isinstance(written, (int, float)) or not 0 <= time.time() - written < ttl():
        return None
    return doc


def _session_doc() -> dict | None:
    from cli.session_file import session_path

    try:
        doc = json.loads(session_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def records(ctx) -> dict[str, list[str]]:
    """``client -> paths`` for the logged-in user: the cache, refreshed when stale."""
    session = _session_doc()
    if session is None:
        return {}
    doc = _read_cache()
    if (
        doc is not None
        and doc.get("vault_id") == session.get("vault_id")
        and doc.get("user") == session.get("user")
    ):
        return doc["records"]
    return _refresh(ctx, session)


def _refresh(ctx, session: dict) -> dict[str, list[str]]:
    from cli.state import CliState

    root = ctx.find_root()
    params = root.params or {}
    state = CliState(home=params.get("home"), addr=params.get("addr"), json=False, debug=False)
    try:
        vault = state.vault(unseal=True)
        rows = vault.secrets.list_all(state.principal())
    except Exception:  # noqa: BLE001 - a completion never fails loudly: it completes nothing
        return {}
    finally:
        import contextlib

        with contextlib.suppress(Exception):  # nothing to report from a completion
            state.close()
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["client"], []).append(row["path"])
    doc = {
        "vault_id": session.get("vault_id"),
        "user": session.get("user"),
        "written_at": int(time.time()),
        "records": out,
    }
    path = cache_path()
    try:
        from cli.agent_protocol import is_private_folder
        from vault.home import write_private_file

        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if is_private_folder(str(path.parent), others=0o022):  # else no cache (review R8)
            write_private_file(path, json.dumps(doc).encode())
    except OSError:
        pass
    return out


def complete_client(ctx, param, incomplete: str):
    from click.shell_completion import CompletionItem

    return [CompletionItem(c) for c in sorted(records(ctx)) if c.startswith(incomplete)]


def complete_path(ctx, param, incomplete: str):
    from click.shell_completion import CompletionItem

    client = ctx.params.get("client")
    if not client:
        return []
    return [CompletionItem(p) for p in sorted(records(ctx).get(client, [])) if p.startswith(incomplete)]
