"""The agent's socket and wire format, shared by the import-light client and the daemon.

Standard library only, and the light part of it (``os``, ``sys`` and the C module ``_socket``,
not ``socket``, whose enums cost 2.5 ms): the client side of ``cvault secret get`` through an
agent imports this module and nothing heavier (docs/agent.md).

Where: ``CVAULT_AGENT_SOCK`` if set, else ``$XDG_RUNTIME_DIR/cvault/agent.sock``, else
``/tmp/cvault-<uid>/agent.sock``. The folder is 0700 and owned by the user, the socket 0600; both
sides refuse a folder that is not (a folder another user created first could hold a fake agent).
Both sides also check the peer's uid with ``SO_PEERCRED``: the daemon refuses any other uid, the
client refuses an agent run by any other uid.

Frames: a request is ``MAGIC`` followed by NUL-separated fields (no field can hold a NUL: argv,
environment values and paths cannot). ``op`` is ``run`` (a CLI command), ``status``, ``lock``,
``unlock`` or ``stop``. A reply is one ASCII header line ``code out_len err_len flags\\n`` followed
by ``out_len`` bytes of standard output and ``err_len`` bytes of standard error; ``flags`` is
``fallback`` when the agent cannot run the command the way the CLI would (it would prompt, or it
holds another vault) and the client must run it itself, else ``-``.
"""

import _socket
import os
import stat
import sys

MAGIC = b"CVAGENT1\0"
MAX_REQUEST = 1 << 20  # argv and environment: far below; anything larger is refused
MAX_REPLY = 64 << 20  # a record with attachments listed, a long list: far below


class AgentUnavailable(Exception):
    """No usable agent (none running, or its folder or owner is wrong); the reason is the message."""


def socket_path() -> str:
    env = os.environ.get("CVAULT_AGENT_SOCK")
    if env:
        return env
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "cvault", "agent.sock")
    return os.path.join("/tmp", f"cvault-{os.getuid()}", "agent.sock")


def is_private_folder(folder: str, *, others: int = 0o077) -> bool:
    """Whether ``folder`` is a real folder (not a symlink) owned by this user that group and
    others have none of the ``others`` mode bits on (0o077: no access; 0o022: no writing).
    ``FileNotFoundError`` goes to the caller. Shared by the agent and by the session file and
    completion cache writers (``cli.session_file``, ``cli.completion``)."""
    st = os.lstat(folder)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not stat.S_IMODE(st.st_mode) & others


def check_private_folder(folder: str) -> None:
    """Raise AgentUnavailable unless ``folder`` is a real folder of ours that only we can use."""
    try:
        private = is_private_folder(folder)
    except FileNotFoundError:
        raise AgentUnavailable("no agent running") from None
    if not private:
        raise AgentUnavailable(f"agent folder {folder} is not a private folder of this user (0700)")


def peer_uid(sock: _socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (Linux ``SO_PEERCRED``)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
    return int.from_bytes(creds[4:8], sys.byteorder)


def encode_request(op: str, fields: list[str]) -> bytes:
    parts = [op, *fields]
    if any("\0" in p for p in parts):
        raise ValueError("a field holds a NUL byte")
    data = MAGIC + b"\0".join(os.fsencode(p) for p in parts)
    if len(data) > MAX_REQUEST:
        raise ValueError("request too large")
    return len(data).to_bytes(4, "big") + data


def decode_request(data: bytes) -> tuple[str, list[str]]:
    if not data.startswith(MAGIC):
        raise ValueError("not an agent request")
    parts = [os.fsdecode(p) for p in data[len(MAGIC) :].split(b"\0")]
    return parts[0], parts[1:]


def encode_reply(code: int, out: bytes = b"", err: bytes = b"", *, fallback: bool = False) -> bytes:
    flags = "fallback" if fallback else "-"
    return f"{code} {len(out)} {len(err)} {flags}\n".encode() + out + err


def recv_exact(sock: _socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ConnectionError("agent connection closed early")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_request(sock: _socket.socket) -> bytes:
    size = int.from_bytes(recv_exact(sock, 4), "big")
    if size > MAX_REQUEST:
        raise ValueError("request too large")
    return recv_exact(sock, size)


def recv_reply(sock: _socket.socket) -> tuple[int, bytes, bytes, bool]:
    header = b""
    while not header.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte or len(header) > 64:
            raise ConnectionError("agent reply malformed")
        header += byte
    code_s, out_s, err_s, flags = header.decode("ascii").split()
    out_len, err_len = int(out_s), int(err_s)
    if out_len + err_len > MAX_REPLY:
        raise ConnectionError("agent reply too large")
    body = recv_exact(sock, out_len + err_len)
    return int(code_s), body[:out_len], body[out_len:], flags == "fallback"


def connect(path: str | None = None, timeout: float = 30.0) -> _socket.socket:
    """A connection to this user's agent, its folder and its peer uid checked."""
    path = path or socket_path()
    check_private_folder(os.path.dirname(path) or ".")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise AgentUnavailable("no agent running") from None
    except OSError as exc:
        sock.close()
        raise AgentUnavailable(f"agent socket {path} cannot be used ({exc.strerror})") from None
    if peer_uid(sock) != os.getuid():
        sock.close()
        raise AgentUnavailable(f"agent socket {path} belongs to another user")
    return sock


def call(
    op: str, fields: list[str], path: str | None = None, timeout: float = 30.0
) -> tuple[int, bytes, bytes, bool]:
    """One request, one reply."""
    sock = connect(path, timeout)
    try:
        sock.sendall(encode_request(op, fields))
        return recv_reply(sock)
    finally:
        sock.close()
