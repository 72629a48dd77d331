"""Shared test helpers: real vault folders, real CLI subprocesses, injected clocks.

Identity (docs/identity.md) for tests:

* ``operator()`` is a ready staff principal for core tests: the user ``operator`` holding all four
  roles, trained until 2100, with a session whose token is fixed (``OPERATOR_TOKEN``). Every vault
  made by :func:`make_vault` contains it, with session lifetimes and the step-up window set so long
  that injected clocks can move freely; :func:`add_client` assigns it to the new client.
  ``VaultDir.cli`` runs as ``operator`` through a session file unless the test passes its own
  ``CVAULT_SESSION_FILE``.
* People come from the one factory, :mod:`tests.factories` (``person(vault, name, *roles)``);
  ``cli_login(vdir, user, folder)`` logs in through the real CLI with the user's own session file.
  The ``staff`` fixture (tests/conftest.py) is a default-settings vault with alice and ada (admins),
  amy (account_manager), bob (engineer, assigned to acme, trained), carl (engineer, trained, not
  assigned) and rita (security_reviewer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from tests.factories import FAR_FUTURE, Person, assign, insert_session, person, write_session_file
from vault.clock import UTC, FixedClock
from vault.facade import Vault
from vault.identity.sessions import token_hash
from vault.principal import ROLES, Principal

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 6, 1, 9, 0, 0, tzinfo=UTC)


@dataclass
class VaultDir:
    """A vault folder on disk with its key file, usable from the library and the CLI."""

    home: Path
    key_file: Path

    @property
    def custody_file(self) -> Path | None:
        return custody_file_of(self.home)

    def env(self, **extra: str) -> dict:
        """Environment for a CLI subprocess; acts as ``operator`` unless CVAULT_SESSION_FILE is given."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("CVAULT_") or k == "CVAULT_ALLOWED_HOSTS"
        }
        env.update(
            {
                "CVAULT_HOME": str(self.home),
                "CVAULT_KEY_FILE": str(self.key_file),
                "PYTHONPATH": str(ROOT),
                **extra,
            }
        )
        if "CVAULT_SESSION_FILE" not in extra:
            env["CVAULT_SESSION_FILE"] = str(self.operator_session_file())
        return env

    def operator_session_file(self) -> Path:
        """A session file (outside the vault folder) holding the operator's fixed token."""
        path = self.home.parent / f"{self.home.name}-operator-session.json"
        if not path.exists():
            write_session_file(path, vault_id_of(self.home), OPERATOR, OPERATOR_TOKEN)
        return path

    def cli(
        self, *args: str, input: str | bytes | None = None, env: dict | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run ``cvault ARGS`` in a subprocess, exactly as a user would.

        As ``operator`` (no session file of the test's own), a client it adds is also assigned to
        it, as ``add_client`` does for library tests, so that core tests keep need-to-know out
        of their way."""
        env = env or self.env()
        proc = run_cli(*args, input=input, env=env, timeout=timeout)
        words = [a for a in args if not a.startswith("--")]
        if (
            proc.returncode == 0
            and words[:2] == ["client", "add"]
            and len(words) > 2
            and env.get("CVAULT_SESSION_FILE") == str(self.operator_session_file())
        ):
            v = self.open()
            try:
                assign_operator(v, words[2])
            finally:
                v.close()
        return proc

    def open(self, clock=None, *, service_options: dict | None = None, upgrade: bool = False) -> Vault:
        """Open and unseal; ``upgrade``: as ``cvault upgrade`` does (vault.context.upgrade_format)."""
        v = Vault.open(self.home, clock=clock, service_options=service_options)
        v.unseal_key_file(self.key_file, upgrade=upgrade)
        return v


def run_coroutine(coroutine, timeout: float = 60):
    """``asyncio.run`` on a thread of its own, returning the result or raising the error.

    The console tests keep one sync Playwright per session, and its event loop counts as running
    on the worker's main thread, where ``asyncio.run`` then refuses to start (CI, stop 28)."""
    import asyncio

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 - raised again on the test's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="run-coroutine")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"the coroutine did not finish in {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def cli_env(vdir, **extra: str) -> dict:
    """Environment for ``cvault`` subprocesses on this vault with no session unless one is given
    (CVAULT_SESSION_FILE): the key file unseals, and the sweep then acts as ``system:sweep``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_") or k == "CVAULT_ALLOWED_HOSTS"}
    env.update(
        {
            "CVAULT_HOME": str(vdir.home),
            "CVAULT_KEY_FILE": str(vdir.key_file),
            "CVAULT_SESSION_FILE": str(vdir.home.parent / "no-session.json"),
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env


def run_cli(
    *args: str,
    input: str | bytes | None = None,
    env: dict | None = None,
    timeout: float = 60,
    module: str = "cli.main",
) -> subprocess.CompletedProcess:
    """``cvault ARGS`` in a subprocess; ``module="cli.launcher"`` is the console script's own entry
    (it hands agent-served commands to a running agent)."""
    text = not isinstance(input, bytes)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=input,
        env=env,
        capture_output=True,
        text=text,
        timeout=timeout,
        cwd=ROOT,
    )


#: the console script (cli.launcher), writing the modules loaded to stderr as it leaves by os._exit
_MODULES_AT_EXIT = """
import json, os, sys
leave = os._exit
def report(code):
    sys.stderr.write("\\nmodules:" + json.dumps(sorted(sys.modules)))
    sys.stderr.flush()
    leave(code)
os._exit = report
sys.argv[0] = "cvault"
from cli.launcher import main
main()
"""


def cli_modules(
    *args: str, env: dict, python_flags: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``cvault ARGS`` through the console script's entry in a subprocess; its result (stderr
    without the report) and every module it had loaded when it left (what a command costs to
    start is mostly what it imports: tests/core/test_fast_paths.py)."""
    proc = subprocess.run(
        [sys.executable, *python_flags, "-c", _MODULES_AT_EXIT, *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    stderr, _, report = proc.stderr.rpartition("\nmodules:")
    if not report.startswith("["):
        raise AssertionError(f"cvault {' '.join(args)} did not leave through os._exit: {proc.stderr[-2000:]}")
    proc.stderr = stderr
    import json

    return proc, set(json.loads(report))


def make_vault(base: Path, clock=None, *, with_operator: bool = True) -> VaultDir:
    """A new vault; with the all-roles ``operator`` user and its long-lived session by default."""
    home, key = base / "vault", base / "vault.key"
    v, _ = Vault.init(home, key_file=key, clock=clock)
    if with_operator:
        seed_operator(v)
    v.close()
    return VaultDir(home, key)


def copy_folder(src: Path, dst: Path, attempts: int = 3) -> None:
    """``shutil.copytree`` of a vault folder whose last SQLite connection may still be closing
    (a connection the garbage collector ends removes ``vault.db-wal``/``-shm`` mid-copy): collect
    first, and copy again from scratch if a file vanished under the copy."""
    import gc

    for attempt in range(attempts):
        gc.collect()
        try:
            shutil.copytree(src, dst)
            return
        except shutil.Error:
            shutil.rmtree(dst, ignore_errors=True)
            if attempt == attempts - 1:
                raise


def copy_vault(template: VaultDir, base: Path) -> VaultDir:
    """A private copy: the vault folder, its key file *and* its custody file (pointed at by the
    copy's vault.db, so that a shred in one copy never touches another copy's custody)."""
    home, key = base / "vault", base / "vault.key"
    copy_folder(template.home, home)
    shutil.copy2(template.key_file, key)
    copy_custody(template, VaultDir(home, key))
    return VaultDir(home, key)


def custody_file_of(home: Path) -> Path | None:
    """The current local custody file a vault records (None for another custodian)."""
    import json
    import sqlite3

    conn = sqlite3.connect(Path(home) / "vault.db")
    try:
        row = conn.execute(
            "SELECT kind, config FROM custodians WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return Path(json.loads(row[1])["file"]) if row and row[0] == "local" else None


def copy_custody(source: VaultDir, target: VaultDir) -> None:
    """Copy ``source``'s custody file next to ``target``'s key file and record it in ``target``."""

    src = custody_file_of(source.home)
    if src is None:
        return
    dst = target.key_file.with_name(target.key_file.stem + ".custody")
    shutil.copy2(src, dst)
    point_custody_at(target.home, target.key_file, dst.resolve())


def point_custody_at(home: Path, key_file: Path, custody_file: Path) -> None:
    """Record ``custody_file`` as the current local custodian's (a moved vault folder), the row
    MACed again as cvault would (the custodian row carries a row MAC since coverage 4), with the
    independent reader's section-8 MAC (tests/format_reader.py) from the key file."""
    import json
    import sqlite3

    from tests import format_reader as fr

    conn = sqlite3.connect(Path(home) / "vault.db")
    try:
        vault_id = bytes(conn.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()[0])
        root = fr.root_key(conn, vault_id, "keyfile", fr.key_file_secret(Path(key_file).read_text()))
        k_row = fr.hkdf(root, vault_id, b"cvault/v1/row-mac")
        config = json.dumps({"file": str(custody_file)})
        rows = conn.execute(
            "SELECT id, kind, created_at, retired_at, mac FROM custodians"
            " WHERE kind = 'local' AND retired_at IS NULL"
        ).fetchall()
        with conn:
            for cid, kind, created, retired, old_mac in rows:
                values = (cid, kind, config, created, retired)
                mac = (
                    None
                    if old_mac is None
                    else fr.hmac_sha256(k_row, fr.row_mac_message("custodians", values))
                )
                conn.execute("UPDATE custodians SET config = ?, mac = ? WHERE id = ?", (config, mac, cid))
    finally:
        conn.close()


def operator() -> Principal:
    """The core tests' staff principal (all roles; see the module docstring)."""
    return Principal(name=OPERATOR, roles=frozenset(ROLES), session_id=token_hash(OPERATOR_TOKEN))


def clock_at(when: datetime = T0) -> FixedClock:
    return FixedClock(when)


def add_client(
    vault: Vault,
    name: str = "acme",
    days: int = 365,
    grace_days: int | None = None,
    principal: Principal | None = None,
):
    data = vault.clients.add(
        principal or operator(), name, sla_end=vault.ctx.now() + timedelta(days=days), grace_days=grace_days
    )
    if user_exists(vault, OPERATOR):
        assign_operator(vault, name)  # need-to-know for operator()
    return data


def assign_operator(vault: Vault, client_name: str) -> None:
    """Assign the test operator to a client, as a second admin would (nobody may assign themselves,
    so the row is written directly, like the other seeded test state)."""
    user_id = vault.ctx.db.scalar("SELECT id FROM users WHERE name = ?", (OPERATOR,))
    assign(vault, Person(OPERATOR, user_id, frozenset(ROLES)), client_name)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


_GREP = r"""
import sys
from pathlib import Path
needle = bytes.fromhex(sys.argv[2])
for p in sorted(Path(sys.argv[1]).rglob("*")):
    if p.is_file() and needle in p.read_bytes():
        print(p)
"""


def grep_tree(folder: Path, needle: bytes) -> list[Path]:
    """Every file under ``folder`` whose bytes contain ``needle``.

    Runs in a child process: opening and closing vault.db in a process that also holds a SQLite
    connection to it drops that process's POSIX locks, after which another process may delete the
    WAL under the open connection (a classic SQLite pitfall, sqlite.org/howtocorrupt.html 2.2)."""
    out = subprocess.run(
        [sys.executable, "-c", _GREP, str(folder), needle.hex()], capture_output=True, text=True, check=True
    ).stdout
    return [Path(line) for line in out.splitlines()]


# --- identity ------------------------------------------------------------------------------------

OPERATOR = "operator"
OPERATOR_TOKEN = "cvs1_test-operator-token-not-a-secret"
#: session lifetimes of make_vault vaults: long enough for any injected clock (~300 years)
LONG_SECONDS = 10**10


def vault_id_of(home: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(Path(home) / "vault.db")
    try:
        return bytes(conn.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()[0]).hex()
    finally:
        conn.close()


def file_sql(vdir: VaultDir, sql: str, params: tuple = ()) -> list[tuple]:
    """The file writer (attacker A4): one statement with plain sqlite3 on the vault's database
    file, no key, committed; the rows it returns."""
    import sqlite3

    db = sqlite3.connect(vdir.home / "vault.db")
    try:
        with db:
            return db.execute(sql, params).fetchall()
    finally:
        db.close()


def user_exists(vault: Vault, name: str) -> bool:
    return vault.ctx.db.one("SELECT 1 FROM users WHERE name = ?", (name,)) is not None


def seed_operator(vault: Vault) -> Person:
    """The ``operator`` user (all roles) and its fixed, long-lived session (see module docstring)."""

    op = person(vault, OPERATOR, *ROLES, real_password=True, trained_until=FAR_FUTURE)
    with vault.ctx.db.write() as conn:
        vault.ctx.save_settings(
            conn,
            {
                # the shred tests end SLAs with short grace periods; the floor (issue 11) has its
                # own tests in tests/identity/test_insider_attacks_cli.py on default settings
                "min_grace_days": 0,
                "session_absolute_seconds": LONG_SECONDS,
                "session_idle_seconds": LONG_SECONDS,
                "stepup_window_seconds": LONG_SECONDS,
            },
        )
    insert_session(vault, op.user_id, OPERATOR_TOKEN, 0)
    vault.ctx.settings = vault.ctx.load_settings(vault.ctx.db)
    return op


def cli_login(
    vdir: VaultDir, user: Person, folder: Path, *, code: str | None = None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, dict]:
    """Log ``user`` in through the real CLI with its own session file; returns (process, env)."""
    env = vdir.env(CVAULT_SESSION_FILE=str(folder / f"{user.name}.session.json"))
    proc = vdir.cli(
        "login",
        user.name,
        "--password-stdin",
        "--totp",
        code or user.code(),
        *extra,
        input=user.password + "\n",
        env=env,
    )
    return proc, env


@dataclass
class Staff:
    """The cast of an identity test vault (default settings, clock at T0)."""

    vdir: VaultDir
    alice: Person  # admin
    amy: Person  # account_manager
    bob: Person  # engineer, assigned to acme, trained
    carl: Person  # engineer, trained, not assigned
    rita: Person  # security_reviewer
    ada: Person  # the second admin (two-person onboarding, issue 11)

    def users(self) -> dict[str, Person]:
        return {u.name: u for u in (self.alice, self.amy, self.bob, self.carl, self.rita, self.ada)}


def make_staff_vault(base: Path, clock=None) -> Staff:
    """Default settings, no operator: alice, amy, bob (on acme), carl, rita; client acme (1 year)."""
    clock = clock or clock_at()
    home, key = base / "vault", base / "vault.key"
    v, _ = Vault.init(home, key_file=key, clock=clock)
    try:
        real = {"real_password": True}
        alice = person(v, "alice", "admin", trained_until=None, **real)
        amy = person(v, "amy", "account_manager", trained_until=None, **real)
        bob = person(v, "bob", "engineer", trained_until=FAR_FUTURE, **real)
        carl = person(v, "carl", "engineer", trained_until=FAR_FUTURE, **real)
        rita = person(v, "rita", "security_reviewer", trained_until=None, **real)
        ada = person(v, "ada", "admin", trained_until=None, **real)
        v.clients.add(amy.principal(v), "acme", sla_end=v.ctx.now() + timedelta(days=365))
        v.access.assign(amy.principal(v), "acme", "bob")
    finally:
        v.close()
    people = [alice, amy, bob, carl, rita, ada]
    for p in people:
        p.vault = None  # shared by every copy of the vault: callers name the vault
    return Staff(VaultDir(home, key), *people)


def copy_staff(template: Staff, base: Path) -> Staff:
    return Staff(
        copy_vault(template.vdir, base),
        template.alice,
        template.amy,
        template.bob,
        template.carl,
        template.rita,
        template.ada,
    )


def on_a_terminal(vdir, *args: str, env: dict | None = None) -> str:
    """Run the CLI with stdout on a pseudo-terminal (``isatty()`` true); its output."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env or vdir.env(),
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return out.decode()


def sealed_or_unsealed_env(vdir: VaultDir, home: Path, session: Path | None, *, sealed: bool) -> dict:
    """A bare CLI environment (no inherited CVAULT_* but this host's endpoint allowance,
    CVAULT_ALLOWED_HOSTS, which the Graph and Entra fakes set): sealed leaves out the key file, and
    no session file means nobody is signed in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "CVAULT_HOME": str(vdir.home),
    }
    if "CVAULT_ALLOWED_HOSTS" in os.environ:
        env["CVAULT_ALLOWED_HOSTS"] = os.environ["CVAULT_ALLOWED_HOSTS"]
    if not sealed:
        env["CVAULT_KEY_FILE"] = str(vdir.key_file)
    if vdir.custody_file is not None:
        env["CVAULT_CUSTODY_FILE"] = str(vdir.custody_file)
    if session is not None:
        env["CVAULT_SESSION_FILE"] = str(session)
    return env


def as_coverage(conn, level: int) -> None:
    """Make a vault look written by the cvault of row-MAC coverage ``level`` (inside a write
    transaction of the open vault): the marker says ``level`` and the tables added since carry no
    MACs (vault.store.rowmac.ADDED), as that cvault left them; the audit high-water mark records
    no coverage above ``level`` (vault.audit.mark: that cvault's mark never saw a higher one)."""
    from vault.audit.mark import MarkStore
    from vault.store import rowmac

    rowmac.put_meta(conn, rowmac.MARKER, level)
    for table, where, params in rowmac.pending_rows(conn):
        conn.execute(f"UPDATE {table} SET mac = NULL WHERE {where}", params)
    marks = MarkStore(conn.keyring)
    mark = marks.read(conn)
    if mark is not None and mark.coverage > level:
        marks.write(conn, mark._replace(coverage=level))


def newer_coverage_strips() -> tuple[str, ...]:
    """SQL removing the MACs every row-MAC coverage after 1 added (of ``meta`` only the keys a
    later coverage added): a vault as the coverage-1 cvault left it, for a file writer's scenario."""
    from vault.store import rowmac

    return tuple(
        f"UPDATE {t} SET mac = NULL"
        + (f" WHERE key IN ({', '.join(repr(k) for k in rowmac.META_ADDED[level])})" if t == "meta" else "")
        for level in sorted(rowmac.ADDED)
        for t in rowmac.ADDED[level]
    )


def cli_upgrade(run, *extra: str) -> subprocess.CompletedProcess:
    """``cvault upgrade`` as its documented flow off a terminal: the summary (exit 2, naming its
    digest), then ``cvault upgrade --yes --digest DIGEST``. ``run(*argv)`` runs the CLI."""
    import re

    looked = run("upgrade")
    named = re.search(r"--digest ([0-9a-f]{32})", looked.stderr)
    if looked.returncode != 2 or named is None:
        return looked  # refused before the summary's question (sealed, integrity failure ...)
    return run(*extra, "upgrade", "--yes", "--digest", named.group(1))
