"""A real interactive ``bash`` on a pseudo-terminal, typed into line by line as a person would.

cvault's hidden prompts (passwords, enrollment codes, TOTP codes) need a terminal, so the README
walkthrough runs in one: each command line is typed, each prompt the command shows is answered
by ``answer(prompt, command)``, and the command's exit status comes back through
``PROMPT_COMMAND``. Output is the terminal's (stdout and stderr together), as a user sees it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: printed by PROMPT_COMMAND after every command (a sentinel no cvault output contains)
_DONE = re.compile(rb"\x1e__rc=(\d+)__\x1e\r?\n")
#: the prompts a walkthrough may meet, at the start of a line, ending in ": " with nothing after
#: it yet (click's prompts; a record's main field prompt is the field's name; ``read -p``)
PROMPTS = re.compile(
    r"(?:^|\n)(New vault passphrase|Vault passphrase|Repeat for confirmation|New password for \w+|"
    r"New password|Current password|Password|TOTP code \(step-up\)|TOTP code|Enrollment code|"
    r"password|Wi-Fi key): $"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Ran:
    command: str
    rc: int
    output: str  # the terminal's text, ANSI colours removed, CRLF as LF
    prompts: list[str]


class Shell:
    def __init__(self, env: dict[str, str], cwd: Path, *, timeout: float = 120):
        self.timeout = timeout
        env = dict(env, PS1="", PS2="", PROMPT_COMMAND=r"printf '\036__rc=%d__\036\n' $?", TERM="dumb")
        # pty.fork: the child is a session leader whose controlling terminal is the pty, as in a
        # terminal emulator (getpass opens /dev/tty)
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes bash
            try:
                os.chdir(cwd)
                os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, int(env.get("COLUMNS", "100")), 0, 0))
        self._buffer = b""
        self._read_until_done()  # the first prompt
        self.run("stty -echo", lambda p, c: "")

    def _read(self) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise AssertionError(
                f"the shell said nothing for {self.timeout} s; so far: {self._buffer[-2000:]!r}"
            )
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # the shell ended
            data = b""
        if not data:
            raise AssertionError(f"the shell ended; last output: {self._buffer[-2000:]!r}")
        return data

    def _read_until_done(self) -> tuple[bytes, int]:
        while True:
            m = _DONE.search(self._buffer)
            if m:
                out, self._buffer = self._buffer[: m.start()], self._buffer[m.end() :]
                return out, int(m.group(1))
            self._buffer += self._read()

    def run(self, command: str, answer: Callable[[str, str], str]) -> Ran:
        """Type ``command`` (one line); answer every prompt; return its output and exit status."""
        os.write(self.fd, command.encode() + b"\n")
        prompts: list[str] = []
        out = b""
        while True:
            m = _DONE.search(self._buffer)
            if m:
                out += self._buffer[: m.start()]
                self._buffer = self._buffer[m.end() :]
                text = ANSI.sub("", out.decode("utf-8", "replace")).replace("\r\n", "\n")
                return Ran(command, int(m.group(1)), text, prompts)
            tail = ANSI.sub("", self._buffer.decode("utf-8", "replace"))
            p = PROMPTS.search(tail)
            if p and tail.endswith(": "):
                prompts.append(p.group(1))
                reply = answer(p.group(1), command)
                out += self._buffer
                self._buffer = b""
                os.write(self.fd, reply.encode() + b"\n")
                continue
            self._buffer += self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, b"exit\n")
        for _ in range(100):
            done, _status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            try:
                select.select([self.fd], [], [], 0.1)
                os.read(self.fd, 65536)
            except OSError:
                pass
        else:
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)
