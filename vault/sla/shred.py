"""The persisted crypto-shred state machine of one client (docs/spec.md §7; docs/sla.md, "Shred steps").

One ``shred_jobs`` row per client records the step reached; every step is idempotent and ends by
committing the next step name, so ``kill -9`` anywhere followed by another sweep completes the
shred, and a client is never half-destroyed::

    (a) started         one transaction: clients.shred_state = 'shredding' (access refused from
                        here on), the job row with its manifest (key ids + fingerprints, counts,
                        public nonces of the wrapped keys for the verification), the blob list
    (b) keys_destroyed  one transaction: every client-key version, every record key (record
                        versions), every encrypted name (records), the client's audit-detail key
    (c) scrubbed        SQLite hygiene: secure_delete is on; WAL checkpoint(TRUNCATE), VACUUM,
                        checkpoint(TRUNCATE) again -- no copy in free pages, the WAL or a journal
    (d) blobs_deleted   every local blob deleted (one unlink each, no stat, then one fsync of
                        each shard folder); pending uploads dropped and one permanent
                        'delete' per blob queued in the outbox for the remote replicas
    (e) purged          no row keyed to the client holds data any more; the clients row stays
                        as the tombstone (name, id, SLA end, grace, shred_state)
    (f) certified       verification that nothing decryptable is left, the audit-chain head, the
                        signed certificate stored; clients.shred_state = 'shredded'
    (g) done            the "sla.shred" audit event naming the certificate digest is written

Only step (b) destroys anything that matters, and it is a single SQLite transaction: before its
commit every key is intact, after it none is. Later steps only remove ciphertext that no key opens.

``Shredder(pause=...)`` is called after each committed step: the kill -9 tests pass a short sleep
(``tests/sla/shred_child.py``, run as a subprocess) so that their kills land inside every step; it
only delays, it never skips a step.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from vault.audit import stored as audit_stored
from vault.audit.details import destroy_client_audit_key
from vault.audit.signing import AuditSigner
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.context import VaultContext
from vault.custody.rows import migrated_at
from vault.errors import ClientUnavailable, IntegrityFailure, VaultError
from vault.hardening import CHILD_CWD, python_argv
from vault.policy import AuditEvent
from vault.principal import Principal
from vault.sla import certificate as certfmt
from vault.store import clients as client_store
from vault.store import outbox, rowmac, stored
from vault.store import records as record_store
from vault.store.clients import ClientRow

STEPS = (
    "started",
    "keys_destroyed",
    "custody_destroyed",
    "scrubbed",
    "blobs_deleted",
    "purged",
    "certified",
    "done",
)
#: wrapped-key nonces kept in the manifest so the certificate can prove the wrapped keys are gone
#: from every vault file (the nonce is public: it is stored in the clear next to the ciphertext)
DEK_NONCE_SAMPLE = 32
NONCE_LEN = 12
#: how often the hygiene step retries a checkpoint blocked by another process's open read
CHECKPOINT_ATTEMPTS = 5

Progress = Callable[[int, int], None]


class ShredIncomplete(VaultError):
    """the shred could not finish now; run the sweep again to resume it."""

    exit_code = 1
    code = "shred_incomplete"


@dataclass(frozen=True)
class Job:
    client_id: str
    step: str
    trigger: str
    request_id: int | None
    performed_by: str
    sla_end: int
    grace_days: int
    manifest: dict
    result: dict
    times: dict


JOB_COLUMNS = (
    "client_id, step, trigger, request_id, performed_by, sla_end, grace_days, manifest,"
    " result, started_at, keys_destroyed_at, custody_destroyed_at, scrubbed_at, blobs_deleted_at,"
    " purged_at, certified_at, done_at"
)
TIME_COLUMNS = (
    "started_at",
    "keys_destroyed_at",
    "custody_destroyed_at",
    "scrubbed_at",
    "blobs_deleted_at",
    "purged_at",
    "certified_at",
    "done_at",
)


def _job(row) -> Job:
    times = dict(zip(TIME_COLUMNS, row[9 : 9 + len(TIME_COLUMNS)], strict=True))
    return Job(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        json.loads(row[7]),
        json.loads(row[8]) if row[8] else {},
        times,
    )


#: how many leading columns of JOB_COLUMNS the row MAC covers (rowmac.TABLES["shred_jobs"])
_COVERED = len(rowmac.TABLES["shred_jobs"].columns)


def load_job(conn, client_id: str) -> Job | None:
    """The client's shred job, its row MAC verified (independent review R11: the step, manifest
    and result are obeyed, so a row edited outside cvault is an integrity failure, never a step)."""
    row = conn.execute(
        f"SELECT {JOB_COLUMNS}, mac FROM shred_jobs WHERE client_id = ?",  # noqa: S608 - a constant column list; values are bound
        (client_id,),
    ).fetchone()
    if row is None:
        return None
    try:
        rowmac.check(conn, "shred_jobs", row[:_COVERED], row[-1])
    except rowmac.RowTampered:
        raise rowmac.RowTampered(
            f"integrity failure: the shred job of client {str(client_id)[:64]} failed authentication"
            " (edited outside cvault?); run cvault doctor"
        ) from None
    return _job(row[:-1])


_SCAN = """
import json, sys
job = json.load(sys.stdin)
needles = [bytes.fromhex(n) for n in job["needles"]]
found = 0
for path in job["files"]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        continue
    found += sum(1 for n in needles if n in data)
print(found)
"""


def count_in_files(files, needles: list[bytes]) -> int:
    """How many (file, needle) pairs match, searched in a child process.

    Never open the database files from this process while its SQLite connection is open: closing
    any descriptor of a file drops every POSIX lock this process holds on it (fcntl semantics), so
    another cvault process could then take itself for the last user of the database and delete
    the write-ahead log under our connection."""
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter with a fixed script; data goes through stdin, no shell
            python_argv(code=_SCAN, project=False),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env={"PATH": os.environ.get("PATH", "")},
            cwd=CHILD_CWD,
            input=json.dumps(
                {"files": [os.path.abspath(f) for f in files], "needles": [n.hex() for n in needles]}
            ),
        )
        return int(done.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        raise ShredIncomplete(
            "shred paused: the verification scan of the database files failed; run 'cvault sla sweep' again"
        ) from None


class Shredder:
    """Runs (or resumes) the shred of one client. Used by the sweep only: it does not authorize."""

    def __init__(self, ctx: VaultContext, principal: Principal, *, pause: Callable[[], None] | None = None):
        self.ctx = ctx
        self.principal = principal
        #: called after every committed step (the kill -9 tests slow the shred down with it)
        self.pause = pause or (lambda: None)

    # --- (a) start ----------------------------------------------------------------------------

    def begin(self, client_id: str, due_at_most: int) -> Job | None:
        """Mark the client 'shredding' and record what will be destroyed, in one transaction.

        Re-checks, under the write lock, that the client is still due (a renewal may have won the
        race); returns None if it is not. Returns the existing job if one was already started."""
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            existing = load_job(conn, client_id)
            if existing is not None:
                return existing
            client = client_store.by_id(conn, client_id)
            if client is None:
                return None
            if (
                client.shred_state is not None
                or to_epoch(client.sla_end) + client.grace_days * 86400 > due_at_most
            ):
                return None
            request = conn.execute(
                "SELECT id FROM shred_requests WHERE client_id = ? AND approved_at IS NOT NULL"
                " AND cancelled_at IS NULL AND executed_at IS NULL",
                (client_id,),
            ).fetchone()
            manifest = self._manifest(conn, client)
            # a custody rotation of this client is moot now: the shred destroys every version
            conn.execute("DELETE FROM custody_jobs WHERE client_id = ?", (client_id,))
            rowmac.insert(
                conn,
                "shred_jobs",
                {
                    "client_id": client_id,
                    "step": "started",
                    "trigger": "early" if request else "sla",
                    "request_id": request[0] if request else None,
                    "performed_by": self.principal.name,
                    "sla_end": to_epoch(client.sla_end),
                    "grace_days": client.grace_days,
                    "manifest": json.dumps(manifest, sort_keys=True),
                    "result": "{}",
                    "started_at": now,
                },
            )
            conn.execute(
                "INSERT OR IGNORE INTO shred_blobs (client_id, blob_name) SELECT ?, v.blob_name"
                " FROM records r JOIN record_versions v ON v.record_id = r.id"
                " WHERE r.client_id = ? AND v.blob_name IS NOT NULL",
                (client_id, client_id),
            )
            conn.execute(  # and the attached files (issue 16)
                "INSERT OR IGNORE INTO shred_blobs (client_id, blob_name) SELECT DISTINCT ?, a.blob_name"
                " FROM records r JOIN attachment_refs a ON a.record_id = r.id WHERE r.client_id = ?",
                (client_id, client_id),
            )
            rowmac.update(conn, "clients", "shred_state = 'shredding'", (), "id = ?", (client_id,))
            if request:
                rowmac.update(conn, "shred_requests", "executed_at = ?", (now,), "id = ?", (request[0],))
            return load_job(conn, client_id)

    def _manifest(self, conn, client: ClientRow) -> dict:
        keys = conn.execute(
            "SELECT version, fingerprint, wrapped FROM client_keys WHERE client_id = ? ORDER BY version",
            (client.id,),
        ).fetchall()
        counts = conn.execute(
            "SELECT count(DISTINCT r.id), count(v.record_id), count(v.wrapped_dek),"
            " count(DISTINCT v.blob_name)"  # files: a pack holds many versions
            " FROM records r LEFT JOIN record_versions v ON v.record_id = r.id WHERE r.client_id = ?",
            (client.id,),
        ).fetchone()
        # the wrapped keys are read strictly (no row MAC covers them, and this read unwraps
        # nothing): anything but a sealed key's BLOB is exit 6 naming the row (review9 R9-5)
        dek_nonces = [
            stored.blob(r[0], stored.SEALED_KEY_LEN, f"record_versions row of record {r[1]} version {r[2]}")[
                :NONCE_LEN
            ].hex()
            for r in conn.execute(
                "SELECT v.wrapped_dek, v.record_id, v.version FROM records r"
                " JOIN record_versions v ON v.record_id = r.id"
                " WHERE r.client_id = ? AND v.wrapped_dek IS NOT NULL ORDER BY random() LIMIT ?",
                (client.id, DEK_NONCE_SAMPLE),
            )
        ]
        audit_key = None
        row = conn.execute(
            "SELECT fingerprint, wrapped FROM client_audit_keys WHERE client_id = ?", (client.id,)
        ).fetchone()
        if row:
            wrapped = stored.blob(
                row[1], stored.SEALED_KEY_LEN, f"client_audit_keys row of client {client.name}"
            )
            audit_key = {"fingerprint": row[0], "nonce": wrapped[:NONCE_LEN].hex()}
        return {
            "client": {"id": client.id, "name": client.name, "created_at": to_epoch(client.created_at)},
            "client_keys": [
                {
                    "version": v,
                    "fingerprint": fp,
                    "nonce": stored.blob(
                        w, stored.SEALED_KEY_LEN, f"client_keys row (version {v}) of client {client.name}"
                    )[:NONCE_LEN].hex(),
                }
                for v, fp, w in keys
            ],
            "audit_detail_key": audit_key,
            "records": counts[0],
            "record_versions": counts[1],
            "record_keys": counts[2],
            "blobs": counts[3] + record_store.client_attachment_count(conn, client.id),
            "attachments": record_store.client_attachment_count(conn, client.id),
            "record_key_nonce_sample": dek_nonces,
            # every custody version not yet destroyed (pending ones too): step (b2) destroys them
            "custody": self.ctx.custody.manifest(conn, client.id) if self.ctx.custody else [],
            "custody_wrapped_nonces": [
                bytes(w[:NONCE_LEN]).hex()
                for (w,) in conn.execute(
                    "SELECT wrapped FROM client_custody WHERE client_id = ? AND wrapped IS NOT NULL",
                    (client.id,),
                )
            ],
        }

    # --- drive --------------------------------------------------------------------------------

    def run(self, client_id: str) -> Job | None:
        """Carry the started job through every remaining step; returns the finished job (None if
        there was none to run)."""
        steps = {
            "started": self._destroy_keys,
            "keys_destroyed": self._destroy_custody,
            "custody_destroyed": self._scrub,
            "scrubbed": self._delete_blobs,
            "blobs_deleted": self._purge,
            "purged": self._certify,
            "certified": self._finish,
        }
        job = load_job(self.ctx.db.conn, client_id)
        if job is not None and STEPS.index(job.step) < STEPS.index("purged"):
            # a job is started in the transaction that marks the client's (MACed) row as
            # shredding: a job row beside a live client was planted (issue 12), never obeyed
            client = client_store.by_id(self.ctx.db.conn, client_id)
            if client is None or client.shred_state is None:
                raise rowmac.RowTampered(
                    f"integrity failure: a shred job for client {client_id} whose client row is not"
                    " being shredded (edited outside cvault?); run cvault doctor"
                )
        while job is not None and job.step != "done":
            steps[job.step](job)
            self.pause()
            job = load_job(self.ctx.db.conn, client_id)
        return job

    def _advance(self, conn, job: Job, step: str, result: dict | None = None) -> None:
        merged = dict(job.result)
        merged.update(result or {})
        column = TIME_COLUMNS[STEPS.index(step)]
        rowmac.update(
            conn,
            "shred_jobs",
            f"step = ?, result = ?, {column} = ?",
            (step, json.dumps(merged, sort_keys=True), to_epoch(self.ctx.now())),
            "client_id = ? AND step = ?",
            (job.client_id, job.step),
        )

    # --- (b) destroy every key, in one transaction ---------------------------------------------

    def _destroy_keys(self, job: Job) -> None:
        # nothing of the client stays in this process's memory from here on (service cache first)
        self.ctx.forget_client_keys(job.client_id)
        with self.ctx.db.write() as conn:
            versions, records = record_store.destroy_client(conn, job.client_id)
            client_keys = client_store.destroy_keys(conn, job.client_id)
            destroy_client_audit_key(conn, job.client_id)
            # the custody references (a Key Vault custodian's wrapped S among them) go with the keys
            custody_rows = conn.execute(
                "DELETE FROM client_custody WHERE client_id = ?", (job.client_id,)
            ).rowcount
            self._advance(
                conn,
                job,
                "keys_destroyed",
                {
                    "destroyed": {
                        "client_key_versions": client_keys,
                        "record_versions": versions,
                        "records": records,
                        "audit_detail_keys": 1 if job.manifest.get("audit_detail_key") else 0,
                        "custody_references": custody_rows,
                    }
                },
            )
        self.ctx.forget_client_keys(job.client_id)

    # --- (b2) destroy the custody secrets, wherever they are ------------------------------------

    def _destroy_custody(self, job: Job) -> None:
        """The custodian destroys every custody version of the client (the custody file entry, or
        the Key Vault key: deleted and purged). Idempotent: a rerun finds them already gone. An
        unreachable custodian pauses the shred here (the database keys are already gone)."""
        from vault.errors import BackendError

        entries = job.manifest.get("custody") or []
        try:
            receipts = self.ctx.custody.destroy_for_shred(job.client_id, entries) if entries else []
        except BackendError as exc:
            raise ShredIncomplete(
                f"shred paused: the custodian could not destroy the custody secrets ({exc}); "
                "run 'cvault sla sweep' again"
            ) from None
        with self.ctx.db.write() as conn:
            self._advance(conn, job, "custody_destroyed", {"custody": [r.as_dict() for r in receipts]})

    # --- (c) no copy left in free pages, the WAL or a journal ----------------------------------

    def scrub_database(self) -> None:
        """checkpoint(TRUNCATE), VACUUM, checkpoint(TRUNCATE); raises if another process's open
        read keeps old pages alive in the WAL (the next sweep retries)."""
        if not self.ctx.db.scrub(CHECKPOINT_ATTEMPTS):
            raise ShredIncomplete(
                "shred paused: another process keeps the vault database open, so "
                "its write-ahead log cannot be emptied; run 'cvault sla sweep' again"
            )

    def _scrub(self, job: Job) -> None:
        self.scrub_database()
        with self.ctx.db.write() as conn:
            self._advance(conn, job, "scrubbed")

    # --- (d) blobs: local now, remote through the outbox --------------------------------------

    def _delete_blobs(self, job: Job) -> None:
        names = [
            r[0]
            for r in self.ctx.db.all(
                "SELECT blob_name FROM shred_blobs WHERE client_id = ?", (job.client_id,)
            )
        ]
        # one unlink per blob, no stat first (a name the unlink does not find was deleted by a
        # killed run, or never written: already absent), then one fsync per shard folder
        deleted, absent = self.ctx.blobs.delete_many(names, durable=True)
        now = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            dropped, queued = outbox.queue_shred_deletes(conn, job.client_id, now)
            # after a kill, the rerun counts the blobs the killed run deleted as already absent
            self._advance(
                conn,
                job,
                "blobs_deleted",
                {
                    "local_blobs": {
                        "location": self.ctx.blobs.location,
                        "blobs": len(names),
                        "deleted": deleted,
                        "already_absent": absent,
                    },
                    "remote": {"delete_queued": queued, "uploads_dropped": dropped},
                },
            )

    # --- (e) purge metadata, keep the tombstone ------------------------------------------------

    def _purge(self, job: Job) -> None:
        """Everything keyed to the client that held data went in step (b); this step re-asserts it
        (a no-op unless something was written meanwhile) and keeps the tombstone: the clients row
        (name, id, SLA end, grace, shred state) plus the job and certificate rows. Assignments stay:
        they are staff history for the audit report, and they keep refusals saying "shredded"."""
        with self.ctx.db.write() as conn:
            straggling = sum(record_store.destroy_client(conn, job.client_id))
            straggling += client_store.destroy_keys(conn, job.client_id)
            self._advance(conn, job, "purged", {"purged_late_rows": straggling})
        if straggling:
            self.scrub_database()

    # --- (f) verify, sign, store ---------------------------------------------------------------

    def verify_destroyed(self, job: Job) -> dict:
        """Evidence that nothing of the client can be decrypted with this vault any more."""
        db = self.ctx.db
        cid = job.client_id
        left = {
            "client_key_versions": db.scalar("SELECT count(*) FROM client_keys WHERE client_id = ?", (cid,)),
            "records": record_store.count(db.conn, cid),
            "orphan_record_keys": db.scalar(
                "SELECT count(*) FROM record_versions WHERE record_id NOT IN (SELECT id FROM records)"
            ),
            "orphan_attachment_refs": db.scalar(
                "SELECT count(*) FROM attachment_refs WHERE record_id NOT IN (SELECT id FROM records)"
            ),
            "audit_detail_keys": db.scalar(
                "SELECT count(*) FROM client_audit_keys WHERE client_id = ?", (cid,)
            ),
            "custody_references": db.scalar(
                "SELECT count(*) FROM client_custody WHERE client_id = ?", (cid,)
            ),
        }
        names = [r[0] for r in db.all("SELECT blob_name FROM shred_blobs WHERE client_id = ?", (cid,))]
        local_left = self.ctx.blobs.count_present(names)
        # try to open the client's key the way every read does
        client = self.ctx.client_by_id(cid)
        self.ctx.forget_client_keys(cid)
        try:
            self.ctx.client_keys(client)
            unwrap = "SUCCEEDED"
        except (ClientUnavailable, IntegrityFailure):
            unwrap = "failed: no client-key version left to unwrap"
        # the wrapped keys' public nonces must appear in no database file
        m = job.manifest
        nonces = (
            [k["nonce"] for k in m["client_keys"]]
            + list(m["record_key_nonce_sample"])
            + list(m.get("custody_wrapped_nonces") or [])
        )
        if m.get("audit_detail_key"):
            nonces.append(m["audit_detail_key"]["nonce"])
        needles = [bytes.fromhex(n) for n in nonces]
        files = sorted(
            p
            for p in self.ctx.home.root.iterdir()
            if p.is_file() and p.name.startswith(self.ctx.home.db_path.name)
        )
        found = count_in_files(files, needles)
        ok = (
            unwrap.startswith("failed")
            and local_left == 0
            and found == 0
            and all(v == 0 for v in left.values())
        )
        return {
            "ok": ok,
            "remaining_in_vault_db": left,
            "local_blobs_remaining": local_left,
            "client_key_unwrap": unwrap,
            "wrapped_key_search": {
                "keys_searched": len(needles),
                "found": found,
                "files": [p.name for p in files],
                "method": "the 96-bit nonce that starts every wrapped client "
                "key, audit-detail key and a sample of record keys, "
                "searched as bytes in every database file",
            },
        }

    def custody_gone(self, job: Job) -> list[dict]:
        """Before certifying (independent review R11): the custody step's receipts are in the
        (MACed) job result for every custody version of the manifest, and the custodian, asked
        again, finds every one of them already destroyed (its destroy is idempotent: a version it
        finds alive is destroyed now, and the certificate is refused, audited, exit 6: the custody
        step was skipped; its receipts go into the job, so the next sweep asks again and, every
        version now found gone, certifies). An unreachable custodian pauses the shred here.
        Returns the receipts."""
        from vault.errors import BackendError

        entries = job.manifest.get("custody") or []
        receipts = job.result.get("custody") or []
        got = {(r.get("client_id"), r.get("version")) for r in receipts if isinstance(r, dict)}
        missing = sorted(e["version"] for e in entries if (job.client_id, e["version"]) not in got)
        problem = None
        if missing:
            problem = f"no custodian receipt for custody version(s) {missing}"
        found: list[dict] = []
        if entries and self.ctx.custody is not None:
            try:
                found = [r.as_dict() for r in self.ctx.custody.destroy_for_shred(job.client_id, entries)]
            except BackendError as exc:
                raise ShredIncomplete(
                    f"shred paused: the custodian could not confirm the custody secrets are gone ({exc});"
                    " run 'cvault sla sweep' again"
                ) from None
            alive = sorted(r["version"] for r in found if not r["already_absent"])
            if alive:
                problem = f"the custodian still held custody version(s) {alive} (destroyed now)"
        if problem is not None:
            if found:  # what the custodian did now is the receipt: the next sweep re-asks it
                with self.ctx.db.write() as conn:
                    merged = dict(job.result, custody=found)
                    rowmac.update(
                        conn,
                        "shred_jobs",
                        "result = ?",
                        (json.dumps(merged, sort_keys=True),),
                        "client_id = ? AND step = ?",
                        (job.client_id, job.step),
                    )
            refusal = IntegrityFailure(
                f"integrity failure: the shred of client {job.manifest['client']['name']} skipped its"
                f" custody step: {problem}; certificate not issued (run cvault doctor)"
            )
            raise refusal  # the sweep audits it (integrity.row_failure) and exits 6
        return found

    def _certify(self, job: Job) -> None:
        self.custody_gone(job)
        self.ctx.db.checkpoint_truncate()
        check = self.verify_destroyed(job)
        if not check["ok"]:
            self.scrub_database()  # e.g. a reader blocked an earlier checkpoint: clean and look again
            check = self.verify_destroyed(job)
        if not check["ok"]:
            raise IntegrityFailure(
                f"integrity failure: shred verification of client "
                f"{job.manifest['client']['name']} found key material left; "
                "certificate not issued"
            )
        head = self._audit_head()
        now = self.ctx.now()
        body = self._certificate_body(job, check, head, now)
        text = certfmt.canonical(body)
        signer = AuditSigner(self.ctx.db, self.ctx.keyring)
        signature = signer.sign(certfmt.signing_input(text))
        with self.ctx.db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO shred_certificates (client_id, body, signature, digest,"
                " issued_at) VALUES (?, ?, ?, ?, ?)",
                (job.client_id, text, signature, certfmt.digest(text), to_epoch(now)),
            )
            rowmac.update(conn, "clients", "shred_state = 'shredded'", (), "id = ?", (job.client_id,))
            self._advance(conn, job, "certified")

    def _audit_head(self) -> dict:
        self.ctx.audit.checkpoint()  # every shred signs the head it certifies (issue 4)
        row = self.ctx.db.one("SELECT seq, entry_hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        if row is None:
            return {"seq": 0, "hash": None}
        return {"seq": row[0], "hash": audit_stored.entry_hash(row[1], row[0]).hex()}  # review9 R9-5

    def _certificate_body(self, job: Job, check: dict, head: dict, now) -> dict:
        m, r = job.manifest, job.result
        request = None
        if job.request_id is not None:
            request = self.ctx.db.one(
                "SELECT requested_by, requested_at, reason, approved_by, approved_at, orig_sla_end"
                " FROM shred_requests WHERE id = ?",
                (job.request_id,),
            )
        t = {k: (rfc3339(from_epoch(v)) if v else None) for k, v in job.times.items()}
        pending = outbox.shred_deletes_pending(self.ctx.db.conn, job.client_id)
        set_row = self.ctx.db.one("SELECT sla_set_by, sla_set_at FROM clients WHERE id = ?", (job.client_id,))
        alone = self.ctx.db.one("SELECT value FROM meta WHERE key = 'single_operator'")
        return {
            "type": certfmt.CERT_TYPE,
            "version": certfmt.CERT_VERSION,
            "vault_id": self.ctx.vault_id.hex(),
            "client": {"name": m["client"]["name"], "id": m["client"]["id"]},
            "sla": {
                "end": rfc3339(from_epoch(job.sla_end)),
                "grace_days": job.grace_days,
                "shred_due": rfc3339(from_epoch(job.sla_end + job.grace_days * 86400)),
                "original_end": (rfc3339(from_epoch(request[5])) if request and request[5] else None),
                # issue 11: who last set the SLA end and grace period, and when
                "set_by": set_row[0] if set_row else None,
                "set_at": rfc3339(from_epoch(set_row[1])) if set_row and set_row[1] else None,
            },
            "two_person_rules": (
                "off: single-operator vault (one person may request and approve)"
                if alone and str(alone[0]) == "1"
                else "on"
            ),
            "trigger": "early shred" if job.trigger == "early" else "automatic sweep",
            "requested_by": request[0] if request else "automatic sweep",
            "requested_at": rfc3339(from_epoch(request[1])) if request else None,
            "request_reason": request[2] if request else "SLA ended and the grace period passed",
            "approved_by": request[3] if request else "automatic sweep",
            "approved_at": rfc3339(from_epoch(request[4])) if request and request[4] else None,
            "performed_by": job.performed_by,
            "keys_destroyed": {
                "client_keys": [
                    {"version": k["version"], "fingerprint": k["fingerprint"]} for k in m["client_keys"]
                ],
                "record_keys": m["record_keys"],
                "audit_detail_key": (
                    {"fingerprint": m["audit_detail_key"]["fingerprint"]}
                    if m.get("audit_detail_key")
                    else None
                ),
            },
            "destroyed": {
                "records": m["records"],
                "record_versions": m["record_versions"],
                "attachments": m.get("attachments", 0),
                "encrypted_names": m["records"],
                "blobs": [
                    {
                        "location": r["local_blobs"]["location"],
                        "blobs": r["local_blobs"]["blobs"],
                        "deleted": r["local_blobs"]["deleted"],
                        "already_absent": r["local_blobs"]["already_absent"],
                        "pending": 0,
                    },
                    {
                        "location": "remote replicas (outbox)",
                        "blobs": m["blobs"],
                        "permanent_deletes_queued": r["remote"]["delete_queued"],
                        "pending_at_issue": pending,
                    },
                ],
            },
            "custody": [
                {
                    "version": c["version"],
                    "destroyed": c["what"],
                    "destroyed_at": rfc3339(from_epoch(c["destroyed_at"])),
                    "gone_for_good_at": (
                        rfc3339(from_epoch(c["permanent_at"])) if c.get("permanent_at") else "unknown"
                    ),
                }
                for c in r.get("custody", [])
            ],
            "can_still_undo": self._can_still_undo(job),
            "timestamps": {
                "shred_started": t["started_at"],
                "keys_destroyed": t["keys_destroyed_at"],
                "custody_destroyed": t.get("custody_destroyed_at"),
                "database_scrubbed": t["scrubbed_at"],
                "blobs_deleted": t["blobs_deleted_at"],
                "metadata_purged": t["purged_at"],
                "issued": rfc3339(now),
            },
            "verification": check,
            "audit_head": head,
        }

    def _can_still_undo(self, job: Job) -> list[str]:
        """P3: precisely what could still decrypt the client after this shred (docs/sla.md 6)."""
        out: list[str] = []
        for receipt in job.result.get("custody", []):
            out += [line for line in receipt.get("residual", []) if line not in out]
        created = job.manifest["client"].get("created_at") or 0
        conn = self.ctx.db.conn
        migrated = migrated_at(conn, self.ctx.audit.migration_recorded(conn))  # MACed (coverage 7)
        if migrated is not None and created < migrated:
            out.append(
                f"a copy of the vault folder, of vault.db or a backup made before "
                f"{rfc3339(from_epoch(migrated))} (before this vault used custody), together with "
                "any unseal secret of this vault (key file, passphrase or recovery key)"
            )
        if not job.manifest.get("custody"):
            out.append(
                "a copy of vault.db made before the shred, together with any unseal secret of this vault: "
                "this client had no custody secret"
            )
        return out

    # --- (g) the certificate event -------------------------------------------------------------

    def _finish(self, job: Job) -> None:
        digest = self.ctx.db.one_or_raise(
            "SELECT digest FROM shred_certificates WHERE client_id = ?",
            (job.client_id,),
            IntegrityFailure(
                f"integrity failure: the shred certificate of {job.manifest['client']['name']} is gone"
            ),
        )[0]
        name = job.manifest["client"]["name"]
        if not self._event_written(name, digest):
            self.ctx.audit.append(
                actor=self.principal.name,
                action=AuditEvent.SLA_SHRED.value,
                outcome="ok",
                client=name,
                reason=f"client shredded; certificate sha256 {digest}",
                origin=self.principal.origin,
            )
        with self.ctx.db.write() as conn:
            self._advance(conn, job, "done")
        self.ctx.db.checkpoint_truncate()

    def _event_written(self, client_name: str, digest: str) -> bool:
        return (
            self.ctx.db.one(
                "SELECT 1 FROM audit_events WHERE action = ? AND client = ? AND reason LIKE ?",
                (AuditEvent.SLA_SHRED.value, client_name, f"%{digest}%"),
            )
            is not None
        )
