"""``cvault doctor``: permissions, schema, every blob's header and tag, orphans, audit chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vault.audit.checkpoints import is_checkpoint_blob
from vault.audit.live import verify_live
from vault.context import VaultContext
from vault.errors import BlobNotFound, ClientUnavailable, CryptoError, IntegrityFailure
from vault.policy import Action
from vault.principal import Principal
from vault.store import records as record_store
from vault.store import rowmac
from vault.store.db import latest_schema_version

if TYPE_CHECKING:
    from vault.records.service import SecretService


@dataclass
class DoctorReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked_blobs: int = 0
    checked_records: int = 0
    audit_entries: int = 0
    #: rows whose MAC was checked (vault.store.rowmac: every row a decision reads)
    checked_row_macs: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings,
            "checked_blobs": self.checked_blobs,
            "checked_records": self.checked_records,
            "audit_entries": self.audit_entries,
            "checked_row_macs": self.checked_row_macs,
        }


class MaintenanceService:
    """``records``: the secrets service, which opens every kept version (the facade wires it)."""

    def __init__(self, ctx: VaultContext, *, records: SecretService):
        self.ctx = ctx
        self.records = records

    def doctor(self, principal: Principal) -> DoctorReport:
        self.ctx.authorize(principal, Action.DOCTOR)
        report = DoctorReport()
        self._permissions(report)
        self._schema(report)
        self._row_macs(report)
        self._password_hashes(report)
        self._custody(report)
        self._jobs_missing(report)
        referenced = self._records(report)
        self._orphans(report, referenced)
        self._audit_chain(report)
        self._sweep_schedule(report)
        self._separation(report)
        # finish any scrub a purge or rotation could not complete (docs/sla.md, "scrub")
        if not self.ctx.db.scrub():
            report.warnings.append(
                "database scrub incomplete: another process keeps the vault "
                "open; run 'cvault doctor' again later"
            )
        self.ctx.record_outcome(
            principal,
            Action.DOCTOR,
            "ok" if report.ok else "error",
            reason=f"{len(report.problems)} problems",
        )
        return report

    def _separation(self, report: DoctorReport) -> None:
        """The two-person rules' standing (issue 11): listed every time, never a problem."""
        from vault.identity.facts import separation_facts

        with self.ctx.db.read() as conn:
            sod = separation_facts(conn)
        if sod["single_operator"]:
            report.warnings.append(
                "single-operator vault (init --single-operator): the two-person rules are off; "
                "one person may request and approve everything"
            )
        for step in sod["bootstrap_steps"]:
            report.warnings.append(
                f"bootstrap step: admin {step['user']} was activated by {step['activated_by']} alone "
                f"at {step['at']} (fewer than two enrolled admins then)"
            )

    def _jobs_missing(self, report: DoctorReport) -> None:
        """A job row deleted outside cvault (independent review R11): a shred or a custody rotation
        whose job row is gone stops silently, and an old custody version (which opens the copies
        and backups from before) stays alive. Named here; the fix is the operator's."""
        shredding = self.ctx.db.all(
            "SELECT name FROM clients WHERE shred_state = 'shredding'"
            " AND id NOT IN (SELECT client_id FROM shred_jobs) ORDER BY name"
        )
        for (name,) in shredding:
            report.problems.append(
                f"shred: client {name} is being shredded but its shred job is missing (deleted"
                " outside cvault?); its custody secret may still exist"
            )
        orphans = self.ctx.db.all(
            "SELECT c.name, cc.version, cc.state FROM client_custody cc JOIN clients c ON c.id = cc.client_id"
            " WHERE cc.state IN ('pending', 'retired') AND c.shred_state IS NULL"  # a shred destroys them
            " AND cc.client_id NOT IN (SELECT client_id FROM custody_jobs) ORDER BY c.name, cc.version"
        )
        for name, version, state in orphans:
            report.problems.append(
                f"custody: client {name} has custody version {version} {state} but no rotation job"
                " (deleted outside cvault?): an old custody version may still be alive"
            )

    def _custody(self, report: DoctorReport) -> None:
        """Finish interrupted custody rotations; check the custody file; a custody file that holds
        a secret the vault says was destroyed is a restored old copy (docs/sla.md section 6)."""
        from vault.errors import BackendError

        custody = self.ctx.custody
        if custody is None:
            return
        if custody.pending_jobs():
            try:
                custody.run_jobs()
            except BackendError as exc:
                report.problems.append(f"custody: rotations pending, custodian unavailable: {exc}")
            except IntegrityFailure as exc:  # a job row edited or put back (audited by run_jobs)
                report.problems.append(f"custody: rotation not run: {exc}")
        from vault.custody.local import LocalCustodian

        try:
            current = custody.custodian(custody.current_id())
        except IntegrityFailure as exc:
            report.problems.append(f"custody: {exc}")
            return
        if not isinstance(current, LocalCustodian):
            return
        problems = current.verify()
        report.problems.extend(f"custody: {p}" for p in problems)
        if problems:
            return
        live = current.live_items()
        from vault.custody.rows import load_versions

        try:  # the states decide what is destroyed below: only authentic ones (coverage 4)
            rows = load_versions(self.ctx.db.conn, "custodian_id = ?", (custody.current_id(),))
        except IntegrityFailure as exc:
            report.problems.append(f"custody: {exc}")
            return
        known = {(v.client_id, v.version): v.state for v in rows}
        shredded = {r[0] for r in self.ctx.db.all("SELECT id FROM clients WHERE shred_state IS NOT NULL")}
        for client_id, version in sorted(live):
            state = known.get((client_id, version))
            if client_id in shredded or state == "destroyed":
                report.problems.append(
                    f"custody: {current.location} holds a secret of client {client_id} (version {version}) "
                    "that was destroyed: an old copy of the custody file was put back; destroying it again"
                )
                current.destroy(client_id, [version])
            elif state is None:
                report.warnings.append(
                    f"custody: secret of unknown client {client_id} (version {version}) in"
                    f" {current.location} "
                    "(left by an interrupted client add; it wraps nothing)"
                )
        for (client_id, version), state in known.items():
            if state == "current" and (client_id, version) not in live:
                report.problems.append(
                    f"custody: {current.location} lacks the current custody secret of client {client_id} "
                    f"(version {version}): that client cannot be opened"
                )

    def _permissions(self, report: DoctorReport) -> None:
        for path in self.ctx.home.check_blob_permissions():
            report.problems.append(f"permissions: {path} is accessible by other users")

    def _schema(self, report: DoctorReport) -> None:
        version = self.ctx.db.schema_version()
        if version != latest_schema_version():
            report.problems.append(f"schema: version {version}, expected {latest_schema_version()}")
        pending = self.ctx.db.pending_migrations()
        if pending:
            missing = ", ".join(f"{n:04d}" for n in pending)
            report.problems.append(f"schema: migrations not applied: {missing}")
        check = self.ctx.db.scalar("PRAGMA integrity_check")
        if check != "ok":
            report.problems.append(f"schema: SQLite integrity check: {check}")
        # every trigger, view, table and index is what the migrations create (checked at open too;
        # here again, for a change made while this connection was open: review 4, R4-0)
        for line in self.ctx.db.schema_problems():
            report.problems.append(f"integrity failure: schema: {line}")

    def _row_macs(self, report: DoctorReport) -> None:
        """Check the MAC of every row a decision reads (issue 12), one line per failing row (at
        most 100 listed per table, then a count)."""
        with self.ctx.db.read() as conn:
            try:
                if not rowmac.enabled(conn):
                    report.problems.append("row MACs: this vault's rows carry no MACs (marker missing)")
                    return
            except IntegrityFailure as exc:
                report.problems.append(exc.message)
                return
            for table in rowmac.TABLES:
                failed = 0
                for line in rowmac.verify_table(conn, table):
                    failed += 1
                    if failed <= 100:
                        report.problems.append(line)
                if failed > 100:
                    report.problems.append(
                        f"integrity failure: {failed} {table} rows failed authentication in all"
                    )
            report.checked_row_macs = rowmac.count_rows(conn)

    def _password_hashes(self, report: DoctorReport) -> None:
        """A stored password hash no row MAC covers the value of: one not of the form and costs
        cvault writes (review10 R10-4: a planted 2**32 - 1 passes) is named, not derived at."""
        from vault import crypto

        bad = [
            name
            for name, phc in self.ctx.db.all(
                "SELECT name, password_hash FROM users WHERE password_hash IS NOT NULL ORDER BY id"
            )
            if not crypto.password_phc_ok(phc)
        ]
        for name in bad[:100]:
            report.problems.append(
                f"integrity failure: the password hash of user {name} in vault.db is not a value"
                f" cvault stored (vault.db was edited): reset the account (cvault user reset {name})"
            )
        if len(bad) > 100:
            report.problems.append(f"integrity failure: {len(bad)} users' password hashes in all")

    def _records(self, report: DoctorReport) -> set[str]:
        """Open every kept version of every record: DEK unwrap, header and GCM tag; then check
        each pack's framing once (bytes appended to it, or a gap, are not any version's)."""
        referenced: set[str] = set()
        packs: set[str] = set()

        def snapshot(conn, client, keys):
            rows = [
                (record_id, meta_sealed, record_store.readable_versions(conn, record_id))
                for record_id, meta_sealed in record_store.of_client(conn, client.id)
            ]
            return client, keys, rows

        # names only: a client row that fails its MAC is reported by _row_macs and here, not raised
        for name, shred_state in self.ctx.db.all("SELECT name, shred_state FROM clients ORDER BY name"):
            if shred_state:
                continue
            try:
                # the client's key version and its records from one snapshot (a rotation running
                # beside doctor must not look like tampering)
                client, keys, records = self.ctx.read_client(name, snapshot)
            except ClientUnavailable:
                continue  # its shred started meanwhile
            except IntegrityFailure as exc:
                if exc.message not in report.problems:
                    report.problems.append(exc.message)
                continue
            for record_id, meta_sealed, versions in records:
                report.checked_records += 1
                try:
                    meta = keys.unseal_meta(meta_sealed, record_id)
                except CryptoError:
                    report.problems.append(
                        f"integrity failure: record {record_id} of client "
                        f"{client.name}: encrypted path failed verification"
                    )
                    continue
                for version, *row in versions:
                    referenced.add(row[1])
                    if row[4] is not None:  # record_store.OPEN_COLUMNS: pack_offset
                        packs.add(row[1])
                    report.checked_blobs += 1
                    try:
                        self.records.open_version(
                            client, keys, record_id, meta["path"], meta["kind"], version, row
                        )
                    except IntegrityFailure as exc:
                        report.problems.append(exc.message)
        for name in sorted(packs):
            try:
                data = self.ctx.blobs.get(name)
            except BlobNotFound:
                continue  # reported for each version stored in it
            if not self.records.pack_is_framed(name, data):
                report.problems.append(
                    f"integrity failure: pack {name} holds bytes its framing does not account for"
                    " (appended, a gap or an edited header: docs/format.md section 9); try 'cvault sync pull'"
                )
        return referenced

    def _orphans(self, report: DoctorReport, referenced: set[str]) -> None:
        stored = set(self.ctx.blobs.list())
        for name in sorted(stored - referenced):
            if is_checkpoint_blob(name):
                continue  # the audit checkpoints' backend copies (docs/audit.md)
            # whatever it holds (a record blob or unknown content), no kept version refers to it
            report.warnings.append(f"orphan blob {name} (left by an interrupted write; harmless)")
        for tmp in self.ctx.blobs.stray_temp_files():
            report.warnings.append(f"stray temporary file {tmp.name} (left by an interrupted write)")

    def _sweep_schedule(self, report: DoctorReport) -> None:
        """Warn when the last sweep that finished everything is older than its schedule (plus 15
        minutes for a timer's random delay and the run itself): the one job that must never
        stop silently (docs/sla.md section 2)."""
        from vault.clock import from_epoch, rfc3339, to_epoch
        from vault.errors import IntegrityFailure
        from vault.store import meta

        last = self.ctx.db.one("SELECT value FROM meta WHERE key = 'last_sweep'")
        try:
            info = meta.last_sweep(None if last is None else last[0])
        except IntegrityFailure as exc:  # the next sweep writes it anew (vault.sla.service)
            report.problems.append(f"sweep: {exc.message}")
            return
        every = int(info.get("every_seconds") or 3600)
        if not info.get("ok_at"):
            report.warnings.append(
                "sweep: no successful SLA sweep recorded yet; schedule 'cvault sla sweep --every 1h' "
                "(cron or the systemd timer, docs/sla.md section 2) or run cvault serve"
            )
            return
        age = to_epoch(self.ctx.now()) - int(info["ok_at"])
        if age > every + 900:
            failing = " (the last run left shreds unfinished)" if info.get("run_ok") is False else ""
            report.warnings.append(
                f"sweep overdue: the last successful SLA sweep was at {rfc3339(from_epoch(info['ok_at']))}, "
                f"{age // 60} min ago, for a schedule of every {every // 60} min{failing}: check the "
                "timer or cron job and its log (docs/sla.md section 2)"
            )

    def _audit_chain(self, report: DoctorReport) -> None:
        result = verify_live(self.ctx)
        report.audit_entries = result.entries
        if not result.ok:
            report.problems.append(f"audit: {result.problem}")
        report.warnings.extend(
            f"audit: {w}"
            for w in result.warnings
            if "overdue" in w or "recovered" in w or "replica" in w or "no signature proves" in w
        )
