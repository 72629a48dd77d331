"""``secret get --copy``: put a value on the clipboard and clear it after 30 seconds.

The value reaches the clipboard tool through its standard input, never argv. A detached child
process waits, then clears the clipboard only if it still holds the same value (compared by a
SHA-256 digest held in memory; the value itself is not kept by the child).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from vault.errors import VaultError

CLEAR_AFTER_SECONDS = 30

TOOLS = [  # (environment variable that must be set, or None; copy argv; paste argv)
    ("WAYLAND_DISPLAY", ["wl-copy"], ["wl-paste", "--no-newline"]),
    ("DISPLAY", ["xclip", "-selection", "clipboard"], ["xclip", "-selection", "clipboard", "-o"]),
    ("DISPLAY", ["xsel", "--clipboard", "--input"], ["xsel", "--clipboard", "--output"]),
    (None, ["pbcopy"], ["pbpaste"]),
]


class NoClipboard(VaultError):
    """no clipboard available (a graphical session with wl-clipboard, xclip or xsel is needed)."""


def _tool():
    for needs, copy, paste in TOOLS:
        if (needs is None or os.environ.get(needs)) and shutil.which(copy[0]):
            return copy, paste
    raise NoClipboard()


def clear_delay() -> int:
    """30 s (docs/spec.md §10); CVAULT_CLIPBOARD_CLEAR_SECONDS may shorten it, never lengthen it."""
    try:
        wanted = int(os.environ.get("CVAULT_CLIPBOARD_CLEAR_SECONDS", CLEAR_AFTER_SECONDS))
    except ValueError:
        wanted = CLEAR_AFTER_SECONDS
    return max(0, min(CLEAR_AFTER_SECONDS, wanted))


def copy_with_timeout(value: str) -> int:
    copy, paste = _tool()
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
        [sys.executable, "-c", _CLEARER],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
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
