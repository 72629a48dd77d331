"""The vault directory (docs/spec.md §2): location, layout and the ssh-style permission check.

<home>/vault.db        SQLite metadata (0600), with -wal and -shm beside it
<home>/blobs/          local blob store (0700 folders, 0600 files)
<home>/config.json     non-secret settings (0600)
<home>/locks/          advisory lock files (sweep, sync)
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from vault.errors import InsecurePermissions, NotFound

if TYPE_CHECKING:
    from pathlib import Path

DB_NAME = "vault.db"
BLOBS_DIR = "blobs"
CONFIG_NAME = "config.json"
LOCKS_DIR = "locks"


def default_home_dir() -> str:
    """``$CVAULT_HOME``, else the platform's user data folder."""
    env = os.environ.get("CVAULT_HOME")
    if env:
        return env
    import platformdirs  # only when no home is given (keeps the scripted path light)

    return str(platformdirs.user_data_dir("cvault", appauthor=False))


def default_home() -> Path:
    from pathlib import Path

    return Path(default_home_dir())


class VaultHome:
    """The vault folder. Its locations are kept as strings and given as :class:`pathlib.Path` on
    request: opening a vault for ``cvault secret get`` never loads :mod:`pathlib` (with the
    ``urllib.parse`` and ``ipaddress`` it imports, about 6 % of the command: docs/performance.md)."""

    def __init__(self, root: Path | str):
        self.root_dir = os.path.expanduser(os.fspath(root))
        self.db_file = os.path.join(self.root_dir, DB_NAME)
        self.blobs_dir = os.path.join(self.root_dir, BLOBS_DIR)
        self.locks_dir = os.path.join(self.root_dir, LOCKS_DIR)
        self.config_file = os.path.join(self.root_dir, CONFIG_NAME)

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self.root_dir)

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def blobs(self) -> Path:
        return self.root / BLOBS_DIR

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def locks(self) -> Path:
        return self.root / LOCKS_DIR

    def exists(self) -> bool:
        return os.path.exists(self.db_file)

    def create(self) -> None:
        """Create the folder tree with private modes (refuses a non-empty existing vault)."""
        if self.db_path.exists():
            raise InvalidHome(f"a vault already exists at {self.root}")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        for sub in (self.blobs, self.locks):
            sub.mkdir(mode=0o700, exist_ok=True)

    def require(self) -> None:
        if not os.path.exists(self.db_file):
            raise NotFound(f"no vault at {self.root_dir}: run 'cvault init' or set --home/CVAULT_HOME")

    def check_permissions(self) -> None:
        """Refuse a vault that other users can read or write (as ssh does with private keys)."""
        candidates = [self.root_dir, self.blobs_dir, self.locks_dir]
        candidates += [self.db_file + suffix for suffix in ("", "-wal", "-shm", "-journal")]
        candidates.append(self.config_file)
        problems = [path for path in candidates if _group_or_other(path, missing_ok=True)]
        if problems:
            raise InsecurePermissions(
                f"refusing to open the vault: {problems[0]} is accessible by other users "
                f"(chmod 700 folders, 600 files)"
            )

    def check_blob_permissions(self) -> list[Path]:
        """Blob files or shard folders accessible by others (doctor; too slow for every open)."""
        bad = []
        if self.blobs.exists():
            for folder in self.blobs.iterdir():
                if _group_or_other(folder):
                    bad.append(folder)
                if folder.is_dir():
                    bad.extend(p for p in folder.iterdir() if _group_or_other(p))
        return bad


class InvalidHome(NotFound):
    """the vault folder is not usable."""

    exit_code = 1
    code = "error"


def _group_or_other(path: Path | str, *, missing_ok: bool = False) -> bool:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if missing_ok:
            return False
        raise
    return bool(stat.S_IMODE(mode) & 0o077)


def read_private_file(path: Path | str, what: str) -> bytes:
    """The bytes of a secret-bearing file (an unseal key file, a passphrase file, a TLS private
    key), refused (:class:`InsecurePermissions`, exit 8) when its group or others may read or
    write it, as ``vault.db`` is. The mode is checked on the opened file (no race with a chmod
    or a swapped path). ``OSError`` (missing, unreadable) goes to the caller, which names it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            raise InsecurePermissions(
                f"refusing to use the {what} {path}: it is accessible by other users (chmod 600 it)"
            )
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Create (or replace) a file readable by its owner only, atomically, with fsync."""
    from pathlib import Path

    path = Path(path)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    # A random name created O_EXCL|O_NOFOLLOW: nothing planted in the folder (a symlink or a file
    # at a guessable name) can receive the bytes (review R8); 0600 applies because the file is new.
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def fsync_dir(folder: Path | str) -> None:
    """Make a rename or unlink in ``folder`` durable (fsync of the directory itself)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
