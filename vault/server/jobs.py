"""Background work of the service (docs/spec.md §11): SLA sweep, OneDrive outbox, audit checkpoints.

One daemon thread, started and stopped by the app's lifespan. Each job runs on its own interval
as the ``system`` principal (the operator unsealed the service, docs/spec.md §3) with a Vault lent by the
pool, so it is one more SQLite connection among the requests'. A failing round is logged (the
error's code and type, never a secret) and tried again at the next interval; nothing a job raises
stops the thread or the server. While the service is sealed, jobs wait.

* ``sla-sweep`` (default every 300 s): only when a client is due (``sla.due()``, an index probe),
  so an idle vault does not write an audit entry every round; then ``sla.sweep``.
* ``outbox`` (60 s): ``sync.push`` when a remote is configured.
* ``audit-checkpoint`` (300 s): sign the head if it moved (``AuditLog.checkpoint`` is idempotent).
* ``webhook-summary`` (60 s, ``webhook_summary_interval``, and once more at stop): one audit
  event per source / claimed integration for the PSA webhook refusals the throttle counted
  instead of auditing them one by one (review S5, docs/sla.md "Contract events"), at most 20 of
  them and one for all the others (review5 R5-3), one per integrity alarm seen again (R5-4), and
  by name the oldest integrity alarms that found an earlier round's slots taken (review8 R8-2).
* ``backup`` (checked every 30 s, with ``backup_dir`` or ``backup_remote``): a backup when
  ``backup_interval`` (a day) passed since the last one, and at once after a shred or a record
  purge destroyed custody (docs/sla.md section 6: old backups no longer open that client, so a
  fresh one keeps every surviving client restorable).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

log = logging.getLogger("cvault.server.jobs")


class BackgroundJobs:
    def __init__(self, pool, settings, limits=None):
        self.pool = pool
        #: the service's :class:`vault.server.routes.Limits` (the supervisor's with --workers):
        #: their dropped webhook refusals are summarised by ``webhook-summary``
        self.limits = limits
        self.jobs = [
            (name, float(interval), fn)
            for name, interval, fn in (
                ("sla-sweep", settings.sweep_interval, self.sweep),
                ("outbox", settings.outbox_interval, self.outbox),
                ("audit-checkpoint", settings.checkpoint_interval, self.checkpoint),
                (
                    "backup",
                    30.0 if (settings.backup_dir or settings.backup_remote) else 0,
                    self.backup,
                ),
                ("webhook-summary", settings.webhook_summary_interval if limits else 0, self.webhook_summary),
            )
            if interval and interval > 0
        ]
        self.settings = settings
        self._last_backup: float | None = None
        self._destroyed_seen: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: name -> {"runs", "failures", "last_error", "last_run"} (for tests and the status view)
        self.state: dict[str, dict] = {
            name: {"runs": 0, "failures": 0, "last_error": None, "last_run": None} for name, _, _ in self.jobs
        }

    # --- the jobs -----------------------------------------------------------------------------------

    @staticmethod
    def _system(name: str):
        from vault.principal import Principal

        return Principal.system(name, origin="service")

    def sweep(self, vault) -> None:
        every = timedelta(seconds=self.settings.sweep_interval)
        if not vault.sla.due():
            vault.sla.record_sweep(ok=True, schedule=every)  # for doctor: the sweep is alive
            return
        result = vault.sla.sweep(self._system("sweep"), every=every)
        log.info("sla sweep: %d shredded, %d unfinished", len(result["shredded"]), len(result["failed"]))

    def outbox(self, vault) -> None:
        from vault.sync.service import remote_configured

        if remote_configured(vault.ctx) and any(vault.sync.pending()[k] for k in ("put", "delete")):
            result = vault.sync.push(self._system("sync"))
            log.info(
                "outbox: %d uploaded, %d deleted, %d failed",
                result["uploaded"],
                result["deleted"],
                result["failed"],
            )

    def checkpoint(self, vault) -> None:
        vault.ctx.audit.checkpoint("periodic")

    def webhook_summary(self, vault) -> None:
        """The summary events for the webhook refusals of the last interval that were throttled
        instead of audited one by one (review S5): one per source or claimed integration, at
        most :data:`vault.server.limits.MAX_SUMMARY_EVENTS` of them (those with the most), one
        for all the others (review5 R5-3), one per integrity alarm seen again (R5-4), and one by
        name for each of the (at most 20) oldest integrity alarms that found an earlier round's
        slots taken (review8 R8-2). The round at stop counts the alarms still waiting past those."""
        from vault.server.limits import summarise

        summary = summarise(self.limits.webhook_drain(final=self._stop.is_set()))
        for n, event in enumerate(summary):
            try:
                vault.integrations.record_throttled(
                    event.key,
                    event.total,
                    event.seconds,
                    sources=event.sources,
                    integrations=event.integrations,
                    past_table=event.past_table,
                )
            except Exception:
                for later in summary[n:]:  # not lost: summarised next round
                    for key, count in later.members:
                        self.limits.dropped.add(key, count)
                raise

    @staticmethod
    def destroyed_count(vault) -> int:
        """Sequence number of the last shred or record purge in the audit log (grows with each)."""
        row = vault.ctx.db.one(
            "SELECT max(seq) FROM audit_events WHERE (action = 'sla.shred' AND outcome = 'ok')"
            " OR (action = 'secret.rm' AND outcome = 'ok' AND reason LIKE 'record purged%')"
        )
        return row[0] or 0

    def backup(self, vault) -> None:
        s = self.settings
        destroyed = self.destroyed_count(vault)
        now = time.monotonic()
        due = self._last_backup is None or now - self._last_backup >= s.backup_interval
        after_shred = self._destroyed_seen is not None and destroyed != self._destroyed_seen
        if not (due or after_shred):
            return
        principal = self._system("backup")
        if s.backup_dir:
            result = vault.backups.create(principal, out=s.backup_dir, keep=s.backup_keep)
            log.info(
                "backup %s: %d bytes%s", result["file"], result["bytes"], " (after a shred)" * after_shred
            )
        if s.backup_remote:
            result = vault.backups.create(principal, remote=True, keep=s.backup_keep)
            log.info("backup %s: %d bytes", result["file"], result["bytes"])
        self._last_backup = now
        self._destroyed_seen = destroyed

    # --- the loop ---------------------------------------------------------------------------------

    def run_once(self, name: str) -> bool:
        """Run one job now; True if it succeeded (or had nothing to do)."""
        fn = next((f for n, _, f in self.jobs if n == name), None)
        if fn is None or self.pool.sealed:
            return False
        st = self.state[name]
        st["runs"] += 1
        st["last_run"] = time.time()
        try:
            with self.pool.lease() as vault:
                fn(vault)
        except Exception as exc:  # noqa: BLE001 - a job never takes the server down; retried
            from vault.errors import VaultError

            st["failures"] += 1
            st["last_error"] = exc.code if isinstance(exc, VaultError) else type(exc).__name__
            log.warning("background job %s failed (%s); retrying next round", name, st["last_error"])
            return False
        st["last_error"] = None
        return True

    def _loop(self) -> None:
        due = {name: time.monotonic() + min(interval, 5.0) for name, interval, _ in self.jobs}
        while not self._stop.is_set():
            now = time.monotonic()
            for name, interval, _ in self.jobs:
                if now >= due[name]:
                    self.run_once(name)
                    due[name] = time.monotonic() + interval
            wait = min(due.values(), default=now + 60) - time.monotonic()
            self._stop.wait(max(0.05, min(wait, 60.0)))

    def start(self) -> None:
        if self._thread is not None or not self.jobs:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="cvault-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            # the refusals throttled since the last round are summarised before the service ends
            self.run_once("webhook-summary")
