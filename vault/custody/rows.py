"""The custody rows as their row MACs cover them (row-MAC coverage 4; docs/format.md section 8).

``client_custody`` (a client's custody versions and their states) and ``custody_jobs`` (the
persisted rotations, vault.custody.service) are read here, each row verified, and a job's step is
checked against its two versions (:func:`check_step`): every step changes the three rows in one
transaction, so any other pair is a row put back from an older copy, which a row MAC alone cannot
tell from the current one. Used by the rotation machinery, ``doctor`` and ``cvault upgrade``.
"""

from __future__ import annotations

from vault.store import rowmac
from vault.tuples import NamedTuple


class Version(NamedTuple):
    """One ``client_custody`` row as its row MAC covers it (rowmac.TABLES order), verified."""

    rowid: int
    client_id: str
    version: int
    custodian_id: int
    state: str
    fingerprint: str | None
    key_id: str | None
    wrapped: bytes | None
    destroyed_at: int | None
    receipt: str | None

    @property
    def ref_row(self) -> tuple:
        """(version, custodian_id, fingerprint, key_id, wrapped): what :meth:`CustodyManager.secret` takes."""
        return (self.version, self.custodian_id, self.fingerprint, self.key_id, self.wrapped)


class Job(NamedTuple):
    """One ``custody_jobs`` row as its row MAC covers it, verified."""

    client_id: str
    reason: str
    from_version: int | None
    to_version: int
    rotate_client_key: int
    step: str


def load_versions(conn, where: str, params: tuple = (), order: str = "") -> list[Version]:
    """Custody versions matching ``where``, each row's MAC verified (row-MAC coverage 4)."""
    return [Version(*r) for r in rowmac.select(conn, "client_custody", where, params, order)]


def load_jobs(conn, where: str = "1", params: tuple = ()) -> list[Job]:
    """Rotation jobs matching ``where`` (oldest first), each row's MAC verified."""
    return [Job(*r[1:]) for r in rowmac.select(conn, "custody_jobs", where, params, "started_at, client_id")]


#: the states of (from_version, to_version) each step leaves: every step changes the job row and
#: the version rows in one transaction, so any other pair is a job or version row put back from an
#: older copy (a row MAC cannot tell an older authentic row from the current one)
STEP_STATES = {
    "started": ("current", "pending"),
    "created": ("current", "pending"),
    "rewrapped": ("retired", "current"),
    "retired": ("destroyed", "current"),
}


def check_step(conn, job: Job, name: str) -> None:
    """Raise RowTampered unless the job's step is the one its (verified) custody versions show:
    a job revived from an older copy would repeat or skip a step (create a secret again, re-wrap
    under a retired version, or be deleted as finished with the old version alive)."""
    rows = {v.version: v for v in load_versions(conn, "client_id = ?", (job.client_id,))}
    old = rows.get(job.from_version) if job.from_version is not None else None
    new = rows.get(job.to_version)
    want = STEP_STATES.get(job.step)
    ok = (
        want is not None
        and old is not None
        and new is not None
        and (old.state, new.state) == want
        # the created step stores the new secret's reference with its step
        and (new.fingerprint is None) == (job.step == "started")
    )
    if not ok:
        raise rowmac.RowTampered(
            f"integrity failure: the custody rotation of client {name[:64]} is at step"
            f" {str(job.step)[:16]} but its custody versions {job.from_version} and {job.to_version} say"
            " otherwise (a job or version row put back from an older copy?); nothing rotated, run"
            " cvault doctor"
        )


def migrated_at(conn, recorded: bool) -> int | None:
    """When the vault was migrated from before custody (None: made under custody): the MACed
    ``custody_migrated_at`` meta row (coverage 7: an edited or planted row is RowTampered).
    ``recorded``: the audit mark records the migration (vault.audit.mark.MIGRATED); the row
    missing then is an integrity failure (it was deleted: a shred certificate would leave out
    what the copies from before the migration can still open)."""
    from vault.errors import IntegrityFailure
    from vault.store import meta

    value = rowmac.meta_value(conn, "custody_migrated_at")
    if value is None:
        if recorded:
            raise IntegrityFailure(
                "integrity failure: this vault's custody migration time is missing from vault.db, but"
                " its audit mark records the migration (the row was deleted); run cvault doctor"
            )
        return None
    return meta.epoch("custody_migrated_at", value)
