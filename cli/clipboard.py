"""``secret get --copy``: put a value on the clipboard and clear it after 30 seconds.

The value reaches the clipboard tool through its standard input, never argv. A detached child
process waits, then clears the clipboard only if it still holds the same value (compared by a
SHA-256 digest held in memory; the value itself is not kept by the child).

Without a clipboard tool (SSH, a console) the value goes to the terminal's own clipboard as an
OSC 52 escape sequence written to the terminal (wrapped for tmux and screen), and a detached
child clears it after the delay with an empty OSC 52 sequence; the command does not wait.

The clearers are isolated Python processes started in "/" (:func:`vault.hardening.python_argv`):
never a ``json.py`` of the folder the command was typed in (review6 R6-4).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

from vault.errors import VaultError
from vault.hardening import CHILD_CWD, python_argv

CLEAR_AFTER_SECONDS = 30

TOOLS = [  # (environment variable that must be set, or None; copy argv; paste argv)
    ("WAYLAND_DISPLAY", ["wl-copy"], ["wl-paste", "--no-newline"]),
    ("DISPLAY", ["xclip", "-selection", "clipboard"], ["xclip", "-selection", "clipboard", "-o"]),
    ("DISPLAY", ["xsel", "--clipboard", "--input"], ["xsel", "--clipboard", "--output"]),
    (None, ["pbcopy"], ["pbpaste"]),
]


class NoClipboard(VaultError):
    """no clipboard available (no wl-copy, xclip, xsel or pbcopy, and no terminal for OSC 52)."""


def _tool():
    for needs, copy, paste in TOOLS:
        if (needs is None or os.environ.get(needs)) and shutil.which(copy[0]):
            return copy, paste
    return None


def _terminal_fd() -> int | None:
    """The terminal the user sees (standard output, else standard error), or None."""
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                return fd
        except OSError:
            continue
    return None


def osc52(value: bytes, env: Mapping[str, str] | None = None) -> bytes:
    """The OSC 52 "set clipboard" sequence for ``value`` (empty: clear), wrapped for tmux (DCS
    passthrough, ESC doubled; tmux needs ``set -g allow-passthrough on`` or its own
    ``set-clipboard on``) or GNU screen (DCS passthrough) when the environment says it runs in one."""
    import base64

    found: Mapping[str, str] = os.environ if env is None else env
    seq = b"\x1b]52;c;" + base64.b64encode(value) + b"\x07"
    if found.get("TMUX"):
        return b"\x1bPtmux;" + seq.replace(b"\x1b", b"\x1b\x1b") + b"\x1b\\"
    if found.get("STY") or found.get("TERM", "").startswith("screen"):
        return b"\x1bP" + seq + b"\x1b\\"
    return seq


def _copy_osc52(value: str, fd: int) -> int:
    """No clipboard tool (over SSH, in a console): ask the terminal itself through OSC 52, and
    clear it the same way after the delay from a detached child holding only the terminal's
    device name (it cannot check that the clipboard still holds the value, so it clears anyway)."""
    try:
        os.write(fd, osc52(value.encode()))
    except OSError:
        raise NoClipboard("the terminal could not be written to; nothing was copied") from None
    delay = clear_delay()
    try:
        device = os.ttyname(fd)
    except OSError:
        return delay
    import json

    clearer = subprocess.Popen(
        python_argv(code=_OSC52_CLEARER, project=False),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=CHILD_CWD,
    )
    assert clearer.stdin is not None  # stdin=PIPE
    clearer.stdin.write(json.dumps({"delay": delay, "device": device, "clear": osc52(b"").decode()}).encode())
    clearer.stdin.close()
    return delay


def clear_delay() -> int:
    """30 s (docs/spec.md §10); CVAULT_CLIPBOARD_CLEAR_SECONDS may shorten it, never lengthen it."""
    try:
        wanted = int(os.environ.get("CVAULT_CLIPBOARD_CLEAR_SECONDS", CLEAR_AFTER_SECONDS))
    except ValueError:
        wanted = CLEAR_AFTER_SECONDS
    return max(0, min(CLEAR_AFTER_SECONDS, wanted))


def copy_with_timeout(value: str) -> int:
    """Copy ``value`` and have it cleared after :func:`clear_delay` seconds; returns the delay.
    A clipboard tool when there is one (wl-copy, xclip, xsel, pbcopy), else OSC 52 on the
    terminal, else :class:`NoClipboard`. The command returns at once either way."""
    tool = _tool()
    if tool is None:
        fd = _terminal_fd()
        if fd is None:
            raise NoClipboard()
        return _copy_osc52(value, fd)
    copy, paste = tool
    try:
        subprocess.run(
            copy,
            input=value.encode(),
            check=True,
            timeout=10,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        raise NoClipboard(f"the clipboard tool {copy[0]} failed; nothing was copied") from None
    import hashlib

    digest = hashlib.sha256(value.encode()).hexdigest()
    delay = clear_delay()
    # the clearer gets the digest and commands on stdin, not argv
    clearer = subprocess.Popen(
        python_argv(code=_CLEARER, project=False),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=CHILD_CWD,
    )
    import json

    assert clearer.stdin is not None  # stdin=PIPE
    clearer.stdin.write(json.dumps({"delay": delay, "digest": digest, "copy": copy, "paste": paste}).encode())
    clearer.stdin.close()
    return delay


_CLEARER = r"""
import hashlib, json, subprocess, sys, time
job = json.loads(sys.stdin.read())
time.sleep(job["delay"])
try:
    now = subprocess.run(job["paste"], capture_output=True, timeout=10).stdout
except Exception:
    now = None
if now is None or hashlib.sha256(now).hexdigest() == job["digest"]:
    subprocess.run(job["copy"], input=b"", timeout=10)
"""

_OSC52_CLEARER = r"""
import json, os, sys, time
job = json.loads(sys.stdin.read())
time.sleep(job["delay"])
try:
    fd = os.open(job["device"], os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, job["clear"].encode())
    finally:
        os.close(fd)
except OSError:
    pass
"""
