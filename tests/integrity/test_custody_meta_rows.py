"""A file writer (A4: writes ``vault.db`` with plain sqlite3, holds no key) edits, plants or
deletes the custody meta rows (review5 leftover, markfix):

* ``custody_format`` says the client keys are under custody. Deleted, the next unseal ran the
  migration from before custody again: on a vault without live clients it silently made a new
  local custodian (the default custody file) the current one, whatever the vault used before
  (a Key Vault, a chosen file). So the row is MACed (row-MAC coverage 7) and the audit mark
  records that the vault is under custody (vault.audit.mark.CUSTODY): deleted, it is exit 6.
* ``custody_migrated_at`` decides what a shred certificate lists as able to undo the shred
  (copies from before the migration). Planted, deleted or edited, the certificate and
  ``custody show`` said what the file writer chose. MACed too, and the mark records the
  migration (vault.audit.mark.MIGRATED).

docs/security.md guarantee 51. Real vault files, the CLI in subprocesses.
"""

from __future__ import annotations

import tarfile

import pytest

from tests.helpers import VaultDir, as_coverage, cli_upgrade, clock_at
from tests.helpers import file_sql as _sql


def _one_line_exit_6(result, *needles: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 6, (result.returncode, out)
    assert "Traceback" not in out and "internal error" not in out, out
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_deleting_the_custody_format_does_not_run_the_migration_again(vdir):
    custodians = _sql(vdir, "SELECT id, kind, config FROM custodians")
    assert len(custodians) == 1
    _sql(vdir, "DELETE FROM meta WHERE key = 'custody_format'")
    shown = vdir.cli("custody", "show")
    # before the fix: exit 0, and a second (local, default-file) custodian was the current one
    _one_line_exit_6(shown, "custody format marker is missing", "audit mark records")
    assert _sql(vdir, "SELECT id, kind, config FROM custodians") == custodians
    _one_line_exit_6(vdir.cli("doctor"))


@pytest.mark.parametrize(
    ("what", "sql"),
    [
        ("custody format changed", "UPDATE meta SET value = 2 WHERE key = 'custody_format'"),
        ("custody format as text", "UPDATE meta SET value = '1' WHERE key = 'custody_format'"),
        (
            "migration time planted",
            "INSERT INTO meta (key, value) VALUES ('custody_migrated_at', strftime('%s', 'now') + 86400)",
        ),
    ],
)
def test_an_edited_or_planted_custody_row_fails_its_mac(vdir, what, sql):
    vdir.env()  # the operator's session file, written while vault.db is still cvault's
    _sql(vdir, sql)
    # before the fix: exit 0 (the planted time printed as "under custody since")
    _one_line_exit_6(vdir.cli("custody", "show"), "failed authentication")


def test_the_custody_rows_get_their_macs_at_the_operators_upgrade(vdir):
    """A vault of the build before coverage 7 stays sealed (exit 8) until ``cvault upgrade``,
    which MACs the custody rows; edited afterwards, they fail their MAC."""
    v = vdir.open()
    try:
        with v.ctx.db.write() as conn:
            as_coverage(conn, 6)
    finally:
        v.close()
    assert _sql(vdir, "SELECT mac FROM meta WHERE key = 'custody_format'") == [(None,)]
    assert vdir.cli("custody", "show").returncode == 8
    upgraded = cli_upgrade(vdir.cli)
    assert upgraded.returncode == 0, upgraded.stderr
    ((tag,),) = _sql(vdir, "SELECT mac FROM meta WHERE key = 'custody_format'")
    assert tag is not None
    assert vdir.cli("custody", "show").returncode == 0
    _sql(vdir, "UPDATE meta SET value = 3 WHERE key = 'custody_format'")
    _one_line_exit_6(vdir.cli("custody", "show"), "failed authentication")


@pytest.fixture
def migrated(tmp_path):
    """The vault made by main at 2a50106 (before custody and row MACs: tests/custody/data),
    upgraded and migrated under custody by the operator's ``cvault upgrade``."""
    from tests.custody.test_shred_reaches_copies import DATA
    from vault.facade import Vault

    with tarfile.open(DATA / "vault-2a50106.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    for path in [tmp_path / "vault", *(tmp_path / "vault").rglob("*"), tmp_path / "vault.key"]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    clock = clock_at()
    clock.advance(days=30)
    v = Vault.open(tmp_path / "vault", clock=clock)
    v.unseal_key_file(tmp_path / "vault.key", upgrade=True)
    try:
        mark = v.ctx.audit.marks.read(v.ctx.db.conn)
    finally:
        v.close()
    vdir = VaultDir(tmp_path / "vault", tmp_path / "vault.key")
    v = vdir.open(clock)
    try:
        v.ctx.audit.append(actor="system", action="doctor", outcome="ok", reason="raise the facts")
        after = v.ctx.audit.marks.read(v.ctx.db.conn)
    finally:
        v.close()
    return vdir, clock, mark, after


def test_the_migration_is_recorded_in_the_mark_and_its_time_cannot_be_deleted(migrated):
    from vault.audit.mark import CUSTODY, MIGRATED
    from vault.custody.rows import migrated_at
    from vault.errors import IntegrityFailure

    vdir, clock, _, after = migrated
    assert after.flags & CUSTODY and after.flags & MIGRATED, after
    assert _sql(vdir, "SELECT mac IS NOT NULL FROM meta WHERE key = 'custody_migrated_at'") == [(1,)]
    _sql(vdir, "DELETE FROM meta WHERE key = 'custody_migrated_at'")
    v = vdir.open(clock)
    try:
        conn = v.ctx.db.conn
        # what the shred certificate's "can still undo" list reads (vault.sla.shred): before the
        # fix the line about copies from before the migration was silently left out
        with pytest.raises(IntegrityFailure, match="custody migration time is missing"):
            migrated_at(conn, v.ctx.audit.migration_recorded(conn))
    finally:
        v.close()
