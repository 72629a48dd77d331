"""The local custodian: custody secrets in one 0600 file outside the vault folder (the default).

File format (UTF-8 text, one record per line; docs/format.md, "custody file")::

    cvault-custody-v1
    vault <vault id, 32 hex>
    generation <n>                         incremented by every rewrite
    k <client id> <version> <S, base64url>  one line per live custody secret
    x <client id> <version> <destroyed at, Unix s> <fingerprint of S>   one line per destroyed one
    end <SHA-256 hex of every byte before this line>

The ``x`` lines (tombstones) hold no secret; they let ``cvault restore`` say *when* a client's
custody was destroyed. The ``end`` line detects a torn or edited file on every rewrite and in
``doctor``; the read path does not hash the whole file (a tampered secret fails the AEAD check of
the client key it opens, docs/format.md).

Every change rewrites the file under an exclusive ``flock`` on ``<file>.lock``:

1. write the new content to ``<file>.new`` (0600, O_EXCL), fsync it, fsync the folder;
2. overwrite the old file's bytes in place with zeros and fsync it, so the destroyed secrets are
   not left in the old inode's blocks once it is unlinked;
3. rename ``<file>.new`` over ``<file>`` and fsync the folder.

A crash after step 1 leaves a complete ``<file>.new``: the next writer (or a reader that finds
``<file>`` unreadable) finishes steps 2-3; a torn ``<file>.new`` is zeroed and removed. Readers take
a shared lock, so they never see a half-done rewrite. What this cannot reach: copies of the file
(backups, snapshots) and old blocks kept by copy-on-write file systems or SSD wear levelling
(docs/sla.md section 6).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from vault import crypto
from vault.clock import Clock, SystemClock, from_epoch, rfc3339, to_epoch
from vault.custody.base import (
    SECRET_LEN,
    Created,
    CustodyDestroyed,
    CustodyMissing,
    CustodyRef,
    CustodyRefused,
    Destroyed,
    b64url,
    b64url_decode,
    check_item,
)
from vault.errors import InsecurePermissions, IntegrityFailure, InvalidInput
from vault.home import fsync_dir

if TYPE_CHECKING:
    from pathlib import Path

MAGIC = b"cvault-custody-v1\n"
_ZERO_CHUNK = bytes(64 * 1024)


class _State:
    """The parsed file: live secrets (base64url) and tombstones ((destroyed at, fingerprint))."""

    def __init__(self, vault_hex: str, generation: int = 0):
        self.vault_hex = vault_hex
        self.generation = generation
        self.live: dict[tuple[str, int], str] = {}
        self.destroyed: dict[tuple[str, int], tuple[int, str]] = {}

    def encode(self) -> bytes:
        lines = [MAGIC.decode(), f"vault {self.vault_hex}\n", f"generation {self.generation}\n"]
        lines += [f"k {c} {n} {s}\n" for (c, n), s in sorted(self.live.items())]
        lines += [f"x {c} {n} {when} {fp}\n" for (c, n), (when, fp) in sorted(self.destroyed.items())]
        body = "".join(lines).encode("ascii")
        return body + b"end " + crypto.sha256(body).hex().encode("ascii") + b"\n"


def _parse(data: bytes) -> _State:
    """The state a complete custody file holds; ValueError if it is torn, edited or not one."""
    if not data.startswith(MAGIC) or not data.endswith(b"\n"):
        raise ValueError("not a custody file")
    cut = data.rfind(b"end ", 0, len(data) - 1)
    if cut <= 0 or data[cut - 1 : cut] != b"\n":
        raise ValueError("no end line")
    body, digest = data[:cut], data[cut + 4 : -1]
    if not crypto.constant_time_equal(crypto.sha256(body).hex().encode("ascii"), digest):
        raise ValueError("checksum mismatch")
    lines = body.decode("ascii").splitlines()
    if len(lines) < 3 or not lines[1].startswith("vault ") or not lines[2].startswith("generation "):
        raise ValueError("bad header")
    state = _State(lines[1][6:], int(lines[2][11:]))
    if len(state.vault_hex) != 32:
        raise ValueError("bad vault id")
    for line in lines[3:]:
        parts = line.split(" ")
        if parts[0] == "k" and len(parts) == 4:
            check_item(parts[1], int(parts[2]))
            if len(b64url_decode(parts[3])) != SECRET_LEN:
                raise ValueError("bad secret")
            state.live[(parts[1], int(parts[2]))] = parts[3]
        elif parts[0] == "x" and len(parts) == 5:
            check_item(parts[1], int(parts[2]))
            state.destroyed[(parts[1], int(parts[2]))] = (int(parts[3]), parts[4])
        else:
            raise ValueError("bad line")
    return state


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _zero_in_place(path: Path) -> None:
    """Overwrite every byte of ``path`` with zeros, durably (step 2 of the rewrite)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        remaining = os.fstat(fd).st_size
        while remaining > 0:
            n = os.write(fd, _ZERO_CHUNK[: min(remaining, len(_ZERO_CHUNK))])
            remaining -= n
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalCustodian:
    """Custody secrets in a private file (see the module docstring)."""

    kind = "local"

    def __init__(
        self,
        path: Path | str,
        vault_id: bytes,
        *,
        vault_home: Path | str | None = None,
        clock: Clock | None = None,
    ):
        # strings, given as Paths on request: reading a client key never loads pathlib
        self._file = os.path.realpath(os.path.expanduser(os.fspath(path)))
        self.vault_id = vault_id
        self._vault_hex = vault_id.hex()
        self.clock = clock or SystemClock()
        if vault_home is not None:
            home = os.path.realpath(os.path.expanduser(os.fspath(vault_home)))
            inside = home if home.endswith(os.sep) else home + os.sep
            if self._file == home or self._file.startswith(inside):
                # a copy of the vault folder must never carry the custody file along (P1)
                raise InvalidInput(f"the custody file {self._file} must be outside the vault folder {home}")
        self._new_file = self._file + ".new"
        self._lock_file = self._file + ".lock"
        self._header = MAGIC + f"vault {self._vault_hex}\n".encode("ascii")

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self._file)

    @property
    def _new(self) -> Path:
        from pathlib import Path

        return Path(self._new_file)

    def __repr__(self) -> str:
        return f"LocalCustodian(path={self._file!r})"

    @property
    def location(self) -> str:
        return f"custody file {self._file}"

    # --- creation -------------------------------------------------------------------------------

    def create_file(self) -> None:
        """Create an empty custody file for this vault (0600; its folder 0700 if made here).

        Idempotent: an existing file of this vault is kept; one of another vault is refused."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(
                f"cannot create the folder of custody file {self.path}: {exc.strerror}"
            ) from None
        with self._locked(exclusive=True):
            self._recover()
            if self.path.exists():
                self._load()  # refuses another vault's file, or a damaged one
                return
            self._replace(_State(self._vault_hex, 1), had_old=False)

    # --- the read path ----------------------------------------------------------------------------

    def open(self, ref: CustodyRef) -> bytes:
        """S for ``ref``; CustodyDestroyed if this file no longer (or never) held it."""
        check_item(ref.client_id, ref.version)
        with self._locked(exclusive=False):
            data = self._read(self._file, missing_ok=True)
            if data is None or not data.startswith(self._header):
                # after a crash mid-rewrite the complete new content is in <file>.new
                data = self._readable_content()
        key = f"\nk {ref.client_id} {ref.version} ".encode("ascii")
        at = data.find(key)
        if at < 0:
            raise self._absent(data, ref.client_id, ref.version)
        end = data.find(b"\n", at + len(key))
        try:
            secret = b64url_decode(data[at + len(key) : end].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            secret = b""
        if len(secret) != SECRET_LEN or not crypto.constant_time_equal(
            crypto.key_fingerprint(secret), ref.fingerprint
        ):
            raise IntegrityFailure(
                f"integrity failure: custody secret of client {ref.client_id} (version {ref.version}) "
                f"in {self._file} does not match the vault"
            )
        return secret

    def _absent(self, data: bytes, client_id: str, version: int) -> CustodyDestroyed:
        tomb = data.find(f"\nx {client_id} {version} ".encode("ascii"))
        if tomb >= 0:
            when = int(data[tomb:].split(b" ", 4)[3])
            return CustodyDestroyed(
                f"custody secret of client {client_id} (version {version}) was destroyed on "
                f"{rfc3339(from_epoch(when))} ({self.location})"
            )
        return CustodyDestroyed(
            f"{self.location} holds no custody secret for client {client_id} (version {version}): "
            "is it the current custody file of this vault?"
        )

    # --- changes ------------------------------------------------------------------------------

    def create(self, items: Sequence[tuple[str, int]]) -> list[Created]:
        """A new S for each (client, version); one that exists already (a repeated call after a
        crash) is returned as it is. A destroyed version is never made again."""
        for client_id, version in items:
            check_item(client_id, version)
        with self._locked(exclusive=True):
            self._recover()
            state = self._load()
            out, changed = [], False
            for client_id, version in items:
                key = (client_id, version)
                if key in state.destroyed:
                    raise CustodyRefused(
                        f"custody version {version} of client {client_id} was destroyed; "
                        "refusing to create it again"
                    )
                if key not in state.live:
                    state.live[key] = b64url(crypto.random_bytes(SECRET_LEN))
                    changed = True
                secret = b64url_decode(state.live[key])
                out.append(Created(secret, CustodyRef(client_id, version, crypto.key_fingerprint(secret))))
            if changed:
                state.generation += 1
                self._replace(state, had_old=True)
            return out

    def destroy(
        self, client_id: str, versions: Iterable[int], *, every_version: bool = False
    ) -> list[Destroyed]:
        """Remove the secrets (all of the client's with ``every_version``), leaving tombstones."""
        versions = set(versions)
        check_item(client_id, 1)
        if every_version:
            with self._locked(exclusive=False):
                state = _parse(self._readable_content())
            versions |= {n for c, n in list(state.live) + list(state.destroyed) if c == client_id}
        # a secret created between that read and the rewrite would be missed: destroy_many runs
        # under the exclusive lock, and no secret of a client is created once its shred started
        return self.destroy_many([(client_id, v) for v in sorted(versions)])

    def destroy_many(self, items: Sequence[tuple[str, int]]) -> list[Destroyed]:
        """Destroy many (client, version) pairs in one rewrite (a change of custodian)."""
        for client_id, version in items:
            check_item(client_id, version)
        now = to_epoch(self.clock.now())
        with self._locked(exclusive=True):
            self._recover()
            state = self._load()
            receipts, changed = [], False
            for client_id, version in items:
                key = (client_id, version)
                if key in state.live:
                    secret = b64url_decode(state.live.pop(key))
                    state.destroyed[key] = (now, crypto.key_fingerprint(secret))
                    changed = True
                    receipts.append(self._receipt(client_id, version, now, already=False))
                else:
                    when = state.destroyed.get(key, (now, ""))[0]
                    receipts.append(self._receipt(client_id, version, when, already=True))
            if changed:
                state.generation += 1
                self._replace(state, had_old=True)
            return receipts

    def _receipt(self, client_id: str, version: int, when: int, *, already: bool) -> Destroyed:
        stamp = rfc3339(from_epoch(when))
        return Destroyed(
            client_id,
            version,
            self.location,
            when,
            when,
            already_absent=already,
            residual=(
                f"a copy of the custody file {self.path} made before {stamp} (a backup, snapshot "
                f"or copy of {self.path.parent}), together with an unseal secret of the vault",
                f"old blocks of {self.path} that a copy-on-write file system, a file-system "
                "snapshot or an SSD kept after it was overwritten",
            ),
        )

    # --- inspection -----------------------------------------------------------------------------

    def describe(self) -> dict:
        with self._locked(exclusive=False):
            state = _parse(self._readable_content())
        return {
            "kind": self.kind,
            "file": str(self.path),
            "generation": state.generation,
            "live_secrets": len(state.live),
            "destroyed": len(state.destroyed),
        }

    def live_items(self) -> set[tuple[str, int]]:
        """(client, version) pairs this file holds a secret for (doctor cross-checks them)."""
        with self._locked(exclusive=False):
            return set(_parse(self._readable_content()).live)

    def verify(self) -> list[str]:
        """Problems found (empty when the file is sound): doctor's check."""
        problems = []
        try:
            with self._locked(exclusive=False):
                data = self._read(self.path)
                try:
                    state = _parse(data or b"")
                except ValueError:
                    problems.append(f"{self.location} is damaged (its checksum does not match)")
                    return problems
                if state.vault_hex != self._vault_hex:
                    problems.append(f"{self.location} belongs to another vault")
                if self._new.exists():
                    problems.append(f"{self._new} is left from an interrupted rewrite")
        except (CustodyMissing, InsecurePermissions) as exc:
            problems.append(str(exc))
        return problems

    def close(self) -> None:
        pass

    # --- file plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, *, exclusive: bool):
        try:
            fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            raise CustodyMissing(
                f"custody file folder {os.path.dirname(self._file)} does not exist: the vault's client keys "
                "cannot be opened (set CVAULT_CUSTODY_FILE to where the custody file is)"
            ) from None
        except OSError as exc:
            if exclusive or exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise CustodyMissing(f"custody lock {self._lock_file}: {exc.strerror}") from None
            fd = None  # read-only medium: readers go without the lock
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # closing drops the flock

    def _read(self, path: Path | str, *, missing_ok: bool = False) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise CustodyMissing(
                f"custody file {path} not found: the vault's client keys cannot be opened "
                "(copy the custody file there or set CVAULT_CUSTODY_FILE)"
            ) from None
        except OSError as exc:
            raise CustodyMissing(f"custody file {path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) & 0o077:
                raise InsecurePermissions(
                    f"refusing to use custody file {path}: it is accessible by other users (chmod 600 it)"
                )
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _readable_content(self) -> bytes:
        """The current complete content: ``<file>``, or ``<file>.new`` after a crash mid-rewrite."""
        data = self._read(self._file, missing_ok=True)
        if data is not None:
            try:
                _parse(data)
                return self._check_vault(data)
            except ValueError:
                pass
        new = self._read(self._new_file, missing_ok=True)
        if new is not None:
            try:
                _parse(new)
                return self._check_vault(new)
            except ValueError:
                pass
        if data is None:
            self._read(self._file)  # raises CustodyMissing with the path
        raise IntegrityFailure(f"integrity failure: {self.location} is damaged (its checksum does not match)")

    def _check_vault(self, data: bytes) -> bytes:
        if not data.startswith(self._header):
            raise IntegrityFailure(
                f"integrity failure: {self.location} belongs to another vault (vault ids differ)"
            )
        return data

    def _load(self) -> _State:
        """Parse and check the file for a rewrite; the caller holds the exclusive lock."""
        state = _parse(self._readable_content())
        return state

    def _recover(self) -> None:
        """Finish or discard a rewrite a crash interrupted (caller holds the exclusive lock)."""
        new = self._read(self._new, missing_ok=True)
        if new is None:
            return
        try:
            _parse(new)
            self._check_vault(new)
        except (ValueError, IntegrityFailure):
            _zero_in_place(self._new)  # a torn write may hold secrets: zero before unlinking
            self._new.unlink()
            fsync_dir(self.path.parent)
            return
        _zero_in_place(self.path)
        os.replace(self._new, self.path)
        fsync_dir(self.path.parent)

    def _replace(self, state: _State, *, had_old: bool) -> None:
        data = state.encode()
        try:
            fd = os.open(self._new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.path.parent)
            if had_old:
                _zero_in_place(self.path)
            os.replace(self._new, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise CustodyRefused(f"{self.location}: write failed: {exc.strerror or exc}") from None
