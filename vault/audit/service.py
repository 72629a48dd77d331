"""The security reviewer's tools (docs/spec.md §9): log, export, verify, report, prune, checkpoints.

Every operation takes the acting principal and is authorized and audited like any other
(``policy.Action.AUDIT_*``: security reviewers). Offline verification of an export needs no vault
and no principal: :func:`vault.audit.verify.verify_export`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from vault.audit import stored
from vault.audit.checkpoints import Checkpoint
from vault.audit.log import EVENT_COLUMNS, genesis_hash
from vault.audit.signing import AuditSigner
from vault.clock import from_epoch, rfc3339
from vault.context import VaultContext
from vault.dates import as_since
from vault.errors import IntegrityFailure, InvalidInput
from vault.policy import Action
from vault.principal import Principal

if TYPE_CHECKING:
    from vault.audit.verify import VerifyResult

# The export formats, the verifier (vault.audit.verify, .live: dataclasses, hashlib) and the
# report are imported by the methods that use them: ``audit log``, the command a reviewer runs
# most, loads none of them (its first page is a whole CLI process, issue 20's <= 200 ms).

Progress = Callable[[int, int], None]
FORMATS = ("jsonl", "csv", "cef")
OUTCOMES = ("allow", "deny", "ok", "error")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sql_second(when: datetime) -> str:
    """A prefix of every RFC 3339 form of that second: safe lower bound for a text comparison."""
    return rfc3339(when.replace(microsecond=0)).rstrip("Z")


class AuditService:
    def __init__(self, ctx: VaultContext):
        self.ctx = ctx

    # --- public key (public information: no principal, works sealed) ----------------------------

    def public_key(self) -> dict:
        """The key reviewers verify with. Unsealed it is derived from the sealed private key
        (``verified``); the clear copy in meta, which anyone who can write vault.db can replace,
        is only what a sealed vault can offer (``verified`` false: docs/audit.md section 3)."""
        from vault.audit.signing import fingerprint

        signer = AuditSigner(self.ctx.db, self.ctx.keyring)
        raw, verified = signer.trusted_public_key()
        data = {
            "public_key": "ed25519:" + base64.b64encode(raw).decode(),
            "fingerprint": fingerprint(raw),
            "vault_id": self.ctx.vault_id.hex(),
            "verified": verified,
            "stored_key_matches": None,
        }
        if verified:
            from vault import crypto

            data["stored_key_matches"] = crypto.constant_time_equal(raw, signer.stored_public_key())
        return data

    # --- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, principal: Principal) -> dict:
        """Sign the head now (e.g. to keep a copy outside the vault's machine)."""
        self.ctx.authorize(principal, Action.AUDIT_VERIFY, detail=None)
        return self.ctx.audit.checkpoint().as_dict()

    def recover(self, principal: Principal, acknowledge: int) -> dict:
        """Acknowledge the raised integrity alarm (admin, TOTP step-up; docs/audit.md section 3):
        the head is signed as a recovery checkpoint that names the alarm, the high-water mark
        restarts there and signing resumes. Nothing in the log is changed or deleted; the verifier
        reports the recovery from then on. Audited (the decision, then the result)."""
        self.ctx.authorize(principal, Action.AUDIT_RECOVER, detail=None)
        try:
            cp, alarm = self.ctx.audit.recover(acknowledge)
        except InvalidInput as exc:
            self.ctx.record_outcome(principal, Action.AUDIT_RECOVER, "error", reason=exc.message[:300])
            raise
        self.ctx.record_outcome(
            principal,
            Action.AUDIT_RECOVER,
            "ok",
            reason=(
                f"integrity alarm acknowledged (first bad entry {alarm['first_bad_seq']}): {alarm['problem']}"
            )[:500],
        )
        return {
            "recovered": True,
            "first_bad_seq": alarm["first_bad_seq"],
            "problem": alarm["problem"],
            "checkpoint_seq": cp.seq,
        }

    # --- listing ------------------------------------------------------------------------------------

    def _query(
        self,
        *,
        user=None,
        client=None,
        action=None,
        outcome=None,
        since=None,
        until=None,
        limit: int | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        oldest: bool = False,
    ):
        """Matching rows, oldest first: every one, the newest ``limit``, or with ``oldest`` the
        first ``limit`` (paging forward from ``after_seq``)."""
        where, params = [], []
        if user:
            where.append("actor = ?")
            params.append(user)
        if client:
            where.append("client = ?")
            params.append(client)
        if action:
            if action.endswith("*"):
                action = action[:-1].rstrip(".")
            where.append("(action = ? OR substr(action, 1, ?) = ?)")
            params += [action, len(action) + 1, action + "."]
        if outcome:
            if outcome not in OUTCOMES:
                raise InvalidInput(f"unknown outcome {outcome!r}: use {', '.join(OUTCOMES)}")
            where.append("outcome = ?")
            params.append(outcome)
        if since is not None:
            where.append("at >= ?")
            params.append(_sql_second(since))
        if until is not None:
            where.append("at <= ?")
            params.append(_sql_second(until) + "~")  # '~' sorts after 'Z' and '.'
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        if before_seq is not None:
            where.append("seq < ?")
            params.append(before_seq)
        sql = f"SELECT {EVENT_COLUMNS} FROM audit_events"  # noqa: S608 - constant column list and conditions; every value is bound
        if where:
            sql += " WHERE " + " AND ".join(where)
        if limit and oldest:
            sql += f" ORDER BY seq LIMIT {int(limit)}"
        elif limit:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT {int(limit)}) ORDER BY seq"  # noqa: S608 - the limit is an int() of the validated parameter
        else:
            sql += " ORDER BY seq"
        for row in self.ctx.db.conn.execute(sql, params):
            at = _at(row[1])
            if (since is not None and at < since) or (until is not None and at > until):
                continue
            yield row

    @staticmethod
    def _entry_dict(row, reader) -> dict:
        # the stored columns by type first (review7 R7-4: never bytes() of a file writer's value)
        sealed = stored.sealed_detail(row[8], row[0])
        prev_hash, entry_hash = stored.entry_hash(row[10], row[0]), stored.entry_hash(row[11], row[0])
        return {
            "seq": row[0],
            "at": row[1],
            "actor": row[2],
            "action": row[3],
            "client": row[4],
            "outcome": row[5],
            "reason": row[6],
            "origin": row[7],
            "detail": reader.open(sealed, row[9]) if reader else None,
            "detail_key": row[9],
            "detail_sealed": None if sealed is None else base64.b64encode(sealed).decode(),
            "prev_hash": prev_hash.hex(),
            "entry_hash": entry_hash.hex(),
        }

    def log(
        self,
        principal: Principal,
        *,
        user: str | None = None,
        client: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = 100,
        after_seq: int | None = None,
        before: int | None = None,
    ) -> list[dict]:
        """Events matching every filter given, oldest first; ``limit`` keeps the newest N. With
        ``after_seq``: the first ``limit`` events after that sequence number (a page; the CLI
        pages through a whole log this way with bounded memory).

        ``before``: only events with a sequence number below it (keyset paging, newest first:
        the next page is ``before=<the smallest seq of this page>``; each page is one index
        range scan, however deep, docs/console.md)."""
        now = self.ctx.now()
        since = None if since is None else as_since(since, now)
        until = None if until is None else as_since(until, now)
        self.ctx.authorize(principal, Action.AUDIT_LOG)
        reader = self.ctx.audit.details.reader()
        keep = ("seq", "at", "actor", "action", "client", "outcome", "reason", "origin", "detail")
        return [
            {k: e[k] for k in keep}
            for e in (
                self._entry_dict(r, reader)
                for r in self._query(
                    user=user,
                    client=client,
                    action=action,
                    outcome=outcome,
                    since=since,
                    until=until,
                    limit=limit,
                    before_seq=before,
                    after_seq=after_seq,
                    oldest=after_seq is not None,
                )
            )
        ]

    # --- export -------------------------------------------------------------------------------------

    def export(
        self,
        principal: Principal,
        format: str,
        *,
        out: Path | str | None = None,
        write: Callable[[str], None] | None = None,
        details: bool = True,
        after_seq: int | None = None,
        since: datetime | str | None = None,
    ) -> dict:
        """Write the whole log as JSON Lines (verifiable offline), CSV or CEF, to ``out`` (a new
        0600 file, never overwritten) or line by line to ``write`` (each line without its end;
        :func:`vault.audit.export.line_end` says which one the format uses).

        ``after_seq`` / ``since`` (CSV and CEF, for a SIEM forwarder): only the entries after that
        sequence number / from that time on; the result's ``head_seq`` is the ``after_seq`` of the
        next run. A JSON Lines export is always the whole log, so that it verifies on its own.

        A fresh signed checkpoint of the head is taken first, so a JSON Lines export is covered
        by a signature up to its last entry."""
        from vault.audit import export as fmt

        if format not in FORMATS:
            raise InvalidInput(f"unknown export format {format!r}: use {', '.join(FORMATS)}")
        if (out is None) == (write is None):
            raise InvalidInput("give an output file or a writer")
        if format == "jsonl" and (after_seq is not None or since is not None):
            raise InvalidInput(
                "a jsonl export is the whole log (it verifies on its own): "
                "--after-seq and --since are for csv and cef"
            )
        if after_seq is not None and after_seq < 0:
            raise InvalidInput("--after-seq must be 0 or more")
        start = as_since(since, self.ctx.now()) if since is not None else None
        self.ctx.authorize(principal, Action.AUDIT_EXPORT, detail=None)
        head = self.ctx.audit.checkpoint()
        reader = self.ctx.audit.details.reader() if details else None
        count = {"entries": 0}

        def entries() -> Iterator[dict]:
            for row in self._query(limit=None, after_seq=after_seq, since=start):
                if row[0] > head.seq:
                    break
                count["entries"] += 1
                e = self._entry_dict(row, reader)
                if not details:
                    e["detail"] = None
                yield e

        if format == "jsonl":
            lines = self._jsonl(principal, head, entries())
        elif format == "csv":
            lines = fmt.csv_lines(entries())
        else:
            lines = fmt.cef_lines(entries(), _version(), self.ctx.vault_name, self.ctx.vault_id.hex())
        target = None
        if out is not None:
            target = Path(out)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise InvalidInput(f"{target} already exists; refusing to overwrite it") from None
            except OSError as exc:
                raise InvalidInput(f"cannot create {target}: {exc.strerror}") from None
            end = fmt.line_end(format)
            with os.fdopen(fd, "w", encoding="ascii", errors="backslashreplace", newline="") as fh:
                for line in lines:
                    fh.write(line + end)
                fh.flush()
                os.fsync(fh.fileno())
        elif write is not None:
            for line in lines:
                write(line)
        result = {
            "format": format,
            "entries": count["entries"],
            "head_seq": head.seq,
            "file": str(target) if target else None,
        }
        span = f" after entry {after_seq}" if after_seq is not None else ""
        span += f" since {rfc3339(start)}" if start is not None else ""
        self.ctx.record_outcome(
            principal,
            Action.AUDIT_EXPORT,
            "ok",
            reason=f"exported {count['entries']} entries as {format}{span}",
        )
        return result

    def _jsonl(self, principal: Principal, head: Checkpoint, entries: Iterator[dict]) -> Iterator[str]:
        from vault.audit import export as fmt
        from vault.audit.signing import fingerprint
        from vault.audit.verify import EXPORT_FORMAT, EXPORT_VERSION, DetailsChain, Trailer, sha256_hex

        signer = AuditSigner(self.ctx.db, self.ctx.keyring)
        public = signer.trusted_public_key()[0]
        checkpoints = [cp for cp in self.ctx.audit.checkpoints() if cp.seq <= head.seq]
        first = self.ctx.db.scalar("SELECT min(seq) FROM audit_events")
        header = fmt.jsonl_line(
            {
                "type": "header",
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "vault_id": self.ctx.vault_id.hex(),
                "public_key": "ed25519:" + base64.b64encode(public).decode(),
                "public_key_fingerprint": fingerprint(public),
                "genesis_hash": genesis_hash(self.ctx.vault_id).hex(),
                "exported_at": rfc3339(self.ctx.now()),
                "exported_by": principal.name,
                "first_seq": first,
                "last_seq": head.seq,
                "checkpoints": len(checkpoints),
            }
        )
        yield header
        for cp in checkpoints:
            yield fmt.jsonl_line(cp.as_dict())
        details = DetailsChain(self.ctx.vault_id)
        count = 0
        for e in entries:
            e["detail_chain"] = details.add(e["seq"], e["detail"]).hex()
            count += 1
            yield fmt.jsonl_line({"type": "entry", **e})
        trailer = Trailer(self.ctx.vault_id, head.seq, count, sha256_hex(header), details.value.hex())
        yield fmt.jsonl_line(trailer.signed(signer.sign(trailer.signing_input())))

    # --- verify -------------------------------------------------------------------------------------

    def verify(
        self, principal: Principal, progress: Progress | None = None, *, all_signatures: bool = False
    ) -> VerifyResult:
        """Verify the live log; the newest backend checkpoint copy is checked too (it catches a
        tail cut together with the checkpoint rows)."""
        from vault.audit.live import verify_live

        self.ctx.authorize(principal, Action.AUDIT_VERIFY)
        result = verify_live(self.ctx, progress, all_signatures=all_signatures)
        self.ctx.record_outcome(
            principal,
            Action.AUDIT_VERIFY,
            "ok" if result.ok else "error",
            reason="chain intact" if result.ok else result.problem,
        )
        return result

    # --- report -------------------------------------------------------------------------------------

    def report(
        self,
        principal: Principal,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        full: bool = False,
    ) -> dict:
        """The reviewer's report over the window (whole seconds), as SQL aggregates over one read
        snapshot (bounded memory: vault.audit.report.report_from_db); list sections show their
        first 100 entries and their totals unless ``full``."""
        now = self.ctx.now()
        since = as_since(since or "30d", now)
        until = now if until is None else as_since(until, now)
        from vault.audit.report import ReportSettings, report_from_db

        self.ctx.authorize(principal, Action.AUDIT_REPORT)
        settings = ReportSettings.from_settings(self.ctx.settings)
        certificates = self._certificates()
        from vault.identity.facts import separation_facts

        with self.ctx.db.read() as conn:  # one snapshot for every section
            report = report_from_db(
                conn, settings, since=since, until=until, certificates=certificates, full=full
            )
            # whatever the window: a single-operator vault and every bootstrap step, forever
            report["separation_of_duties"] = separation_facts(conn)
        return report

    def _certificates(self) -> dict[str, dict]:
        rows = self.ctx.db.all(
            "SELECT c.digest, c.issued_at, k.name FROM shred_certificates c"
            " LEFT JOIN clients k ON k.id = c.client_id"
        )
        return {r[0]: {"digest": r[0], "issued_at": rfc3339(from_epoch(r[1])), "client": r[2]} for r in rows}

    # --- retention ----------------------------------------------------------------------------------

    def prune(self, principal: Principal, before: datetime | str) -> dict:
        """Delete the entries older than ``before`` up to the newest checkpoint among them.

        The log is verified first (pruning a damaged log would destroy the evidence). In one
        transaction: a prune checkpoint signing the head *and* the new base (the last deleted
        entry's seq and hash) is written, then the entries up to the base and the checkpoints
        they make unverifiable are deleted. The verifier starts from that signed base."""
        before = as_since(before, self.ctx.now())
        self.ctx.authorize(principal, Action.AUDIT_PRUNE, detail=None)
        keep_days = int(self.ctx.settings["audit_min_retention_days"])
        newest_allowed = self.ctx.now() - timedelta(days=keep_days)
        if before > newest_allowed:
            raise InvalidInput(
                f"audit prune refused: entries younger than {keep_days} days are kept "
                f"(retention minimum); --before must be {rfc3339(newest_allowed)} "
                "or earlier"
            )
        from vault.audit.live import verify_live

        check = verify_live(self.ctx)
        if not check.ok:
            raise IntegrityFailure(f"audit prune refused: the log does not verify ({check.problem})")
        with self.ctx.db.write() as conn:
            base = None
            for seq, entry_hash in conn.execute(
                "SELECT c.seq, c.entry_hash FROM audit_checkpoints c JOIN audit_events e"
                " ON e.seq = c.seq WHERE c.kind != 'prune' ORDER BY c.seq DESC"
            ).fetchall():
                at = conn.execute("SELECT at FROM audit_events WHERE seq = ?", (seq,)).fetchone()[0]
                if _at(at) < before:
                    base = (seq, stored.checkpoint_hash(entry_hash, seq))
                    break
            if base is None:
                result = {"pruned": 0, "base_seq": None, "before": rfc3339(before)}
                cp = None
            else:
                cp = self.ctx.audit.prune_checkpoint(conn, base)
                pruned = conn.execute("DELETE FROM audit_events WHERE seq <= ?", (base[0],)).rowcount
                conn.execute("DELETE FROM audit_checkpoints WHERE seq <= ?", (base[0],))
                result = {
                    "pruned": pruned,
                    "base_seq": base[0],
                    "before": rfc3339(before),
                    "checkpoint_seq": cp.seq,
                }
        if cp is not None:
            # the blob-store (and OneDrive) copies of older checkpoints are kept: they are the
            # reviewer's independent evidence of what the log held before the prune
            self.ctx.audit.copy_to_backend(cp)
            self.ctx.db.checkpoint_truncate()
        self.ctx.record_outcome(
            principal,
            Action.AUDIT_PRUNE,
            "ok",
            reason=(
                f"pruned {result['pruned']} entries up to {result['base_seq']}" if cp else "nothing to prune"
            ),
        )
        return result


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("client-config-vault")
    except PackageNotFoundError:
        return "0"
