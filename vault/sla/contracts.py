"""SLA dates from the PSA (issue 18 item 3; docs/sla.md, "Contract dates from the PSA").

Two ways in, one rule for applying a contract date to a client (:meth:`ContractService.apply`):

* ``cvault sla import FILE`` (:meth:`ContractService.import_contracts`): a CSV or JSON export with
  ``client``, ``contract_end`` and an optional ``renewal``; ``--dry-run`` shows the diff. Every row
  is checked before anything changes; unknown clients are listed, never created.
* ``POST /v1/sla/contract-events`` (:meth:`IntegrationService.receive`): a PSA's webhook, signed
  with HMAC-SHA256 under a per-integration secret (``cvault integration add``), replay-protected by
  a timestamp window and the event id, each event audited as the integration.

The new SLA end is ``renewal`` when given (the end of an agreed renewal term), else
``contract_end``. A later end is a renewal (``sla renew``); an earlier end still in the future
shortens the SLA (``sla renew`` to that date); an end at or before now is ``sla expire`` exactly:
access stops at once and the shred waits for the grace period, never below the vault's minimum
(issue 11). Each change goes through those operations, so it is authorized and audited as they are.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from vault import crypto, names
from vault.clock import from_epoch, rfc3339, to_epoch
from vault.context import VaultContext
from vault.dates import as_when
from vault.errors import (
    AuthenticationFailed,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    Replayed,
    VaultError,
)
from vault.policy import INTEGRATION, Action, AuditEvent
from vault.principal import Principal
from vault.store import rowmac
from vault.store.integrations import unseal_secret

if TYPE_CHECKING:
    import sqlite3

    from vault.sla.service import SlaService

MAX_ROWS = 10_000
#: a signed event older or newer than this (seconds) is refused (replay and clock skew)
TIMESTAMP_WINDOW = 300
#: the event ids kept per integration for replay protection (those of applied events only)
EVENT_DAYS = 30
EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SECRET_BYTES = 32
#: request headers of a contract event (docs/sla.md spells the scheme out)
H_INTEGRATION = "x-cvault-integration"
H_TIMESTAMP = "x-cvault-timestamp"
H_SIGNATURE = "x-cvault-signature"
#: the form of a signature header (docs/sla.md): ``v1=`` and 64 hex digits
SIGNATURE = re.compile(r"v1=[0-9a-fA-F]{64}")


def could_be_valid(headers: dict[str, str]) -> bool:
    """Whether a contract event's head (lower-cased header names) could belong to a valid signed
    event: an integration name of the right form, a timestamp of digits and a signature of the
    right form. Only a request failing this may be throttled before its body is read and its
    signature checked (review5 R5-1): a valid signature is never refused by the throttle."""
    return bool(
        EVENT_ID.fullmatch(headers.get(H_INTEGRATION, ""))
        and headers.get(H_TIMESTAMP, "").isdigit()
        and SIGNATURE.fullmatch(headers.get(H_SIGNATURE, "").strip())
    )


_COLUMNS = {
    "client": "client",
    "customer": "client",
    "contract_end": "contract_end",
    "contract end": "contract_end",
    "end": "contract_end",
    "end_date": "contract_end",
    "renewal": "renewal",
    "renewal_date": "renewal",
    "renewal date": "renewal",
}


class Contract(NamedTuple):
    where: str  # "row 3", "item 2", "event evt-1"
    client: str
    contract_end: str
    renewal: str | None


def parse_contracts(lines: list[str]) -> list[Contract]:
    """Rows of a CSV (header: ``client``, ``contract_end``, optional ``renewal``; a few spellings
    accepted) or a JSON array of objects with those keys. One line naming the row on error."""
    text = "\n".join(lines).lstrip("\ufeff")
    if not text.strip():
        raise InvalidInput("the contract file is empty")
    if text.lstrip().startswith("["):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"contract file: not valid JSON (line {exc.lineno})") from None  # type: ignore[attr-defined]
        if not isinstance(doc, list):
            raise InvalidInput("contract file: JSON must be an array of objects")
        return [_contract(f"item {n}", item) for n, item in enumerate(doc, 1)][: _bounded(len(doc))]
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except (csv.Error, StopIteration):
        raise InvalidInput("contract file: no CSV header") from None
    keys = [_COLUMNS.get(h.strip().lower()) for h in header]
    if "client" not in keys or "contract_end" not in keys:
        raise InvalidInput(
            "contract file: the CSV header needs 'client' and 'contract_end' (and may have 'renewal')"
        )
    out: list[Contract] = []
    try:
        for n, row in enumerate(reader, 2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InvalidInput(
                    f"contract file: line {n} has {len(row)} columns, the header {len(header)}"
                )
            item = {k: v for k, v in zip(keys, row, strict=True) if k}
            out.append(_contract(f"line {n}", item))
            _bounded(len(out))
    except csv.Error as exc:
        raise InvalidInput(f"contract file: CSV error on line {reader.line_num}: {exc}") from None
    return out


def _bounded(n: int) -> int:
    if n > MAX_ROWS:
        raise InvalidInput(f"contract file: more than {MAX_ROWS} rows")
    return n


def _contract(where: str, item: Any) -> Contract:
    if not isinstance(item, dict):
        raise InvalidInput(f"contract file: {where} is not an object")
    client, end, renewal = item.get("client"), item.get("contract_end"), item.get("renewal")
    for name, value in (("client", client), ("contract_end", end)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"contract file: {where} has no {name}")
    if renewal is not None and not isinstance(renewal, str):
        raise InvalidInput(f"contract file: {where}: renewal must be a date")
    assert isinstance(client, str) and isinstance(end, str)  # noqa: S101 - narrowed above
    return Contract(where, client.strip(), end.strip(), (renewal or "").strip() or None)


class ContractService:
    """Applies contract dates; used by ``sla import`` and by the webhook."""

    def __init__(self, ctx: VaultContext, sla: SlaService):
        self.ctx = ctx
        self.sla = sla

    def _target(self, contract: Contract, now: datetime) -> datetime:
        try:
            end = as_when(contract.contract_end, now, self.ctx.zone)
            renewal = as_when(contract.renewal, now, self.ctx.zone) if contract.renewal else None
        except InvalidInput as exc:
            raise InvalidInput(f"{contract.where} ({contract.client}): {exc.message}") from None
        return renewal if renewal is not None and renewal > end else end

    def plan(self, contract: Contract, now: datetime) -> dict:
        """What applying the contract would do: ``change`` is ``extend``, ``shorten``, ``end``,
        ``unchanged``, ``unknown_client`` or ``shredded``."""
        target = self._target(contract, now)
        row = {"client": contract.client, "where": contract.where, "new_sla_end": rfc3339(target)}
        try:
            client = self.ctx.client(contract.client)
        except (NotFound, InvalidInput):
            return {**row, "change": "unknown_client", "sla_end": None, "state": None}
        state = client.state(now)
        row.update(sla_end=rfc3339(client.sla_end), state=state)
        if client.shred_state is not None:
            change = "shredded"
        elif to_epoch(target) == to_epoch(client.sla_end) or (target <= now and state != "active"):
            change = "unchanged"  # already ended: an earlier end changes nothing (nor the grace)
        elif target <= now:
            change = "end"
        elif target > client.sla_end:
            change = "extend"
        else:
            change = "shorten"
        return {**row, "change": change}

    def apply(
        self,
        principal: Principal,
        plan: dict,
        why: str,
        *,
        within: Callable[[sqlite3.Connection], None] | None = None,
    ) -> dict:
        """Carry out one planned change through ``sla renew`` / ``sla expire``. ``within(conn)``:
        the caller's own write in the transaction that makes the change (in one of its own when
        the plan changes nothing), so both commit or neither does: a contract event's claim of
        its id (:meth:`IntegrationService.receive`)."""
        if plan["change"] in ("extend", "shorten"):
            self.sla.renew(principal, plan["client"], plan["new_sla_end"], within=within)
        elif plan["change"] == "end":
            self.sla.expire(principal, plan["client"], reason=why, within=within)
        elif within is not None:
            with self.ctx.db.write() as conn:
                within(conn)
        return plan

    def import_contracts(self, principal: Principal, lines: list[str], *, dry_run: bool = False) -> dict:
        """``sla import FILE``: every row parsed and planned first (a bad row: one line, nothing
        changed), then each change applied (unless ``dry_run``). Unknown clients are listed."""
        contracts = parse_contracts(list(lines))
        now = self.ctx.now()
        plans = [self.plan(c, now) for c in contracts]
        seen: set[str] = set()
        for p in plans:
            if p["client"] in seen:
                raise InvalidInput(f"contract file: {p['where']}: client {p['client']} appears twice")
            seen.add(p["client"])
        counts: dict[str, int] = {}
        for p in plans:
            counts[p["change"]] = counts.get(p["change"], 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        self.ctx.authorize(
            principal,
            Action.SLA_IMPORT,
            detail=f"{'dry run: ' if dry_run else ''}{len(plans)} rows: {detail}",
        )
        applied = []
        if not dry_run:
            for p in plans:
                if p["change"] in ("extend", "shorten", "end"):
                    applied.append(self.apply(principal, p, f"contract ended (sla import, {p['where']})"))
        return {
            "dry_run": dry_run,
            "rows": plans,
            "unknown_clients": [p["client"] for p in plans if p["change"] == "unknown_client"],
            "counts": counts,
            "applied": len(applied),
        }


class IntegrationService:
    """PSA integrations: per-integration HMAC secrets, and the signed contract events."""

    def __init__(self, ctx: VaultContext, contracts: ContractService):
        self.ctx = ctx
        self.contracts = contracts

    def _seal(self, integration_id: int, secret: bytes) -> bytes:
        return self.ctx.keyring.seal_for("integration-seal", secret, "integration", integration_id)

    def _unseal(self, integration_id: int, sealed: bytes) -> bytes:
        return unseal_secret(self.ctx.keyring, integration_id, sealed)

    def add(self, principal: Principal, name: str) -> dict:
        """A new integration and its secret, returned once (64 hex digits); stored sealed."""
        names.team_name(name)  # same shape as a user or team name: halopsa, connectwise-prod
        self.ctx.authorize(principal, Action.INTEGRATION_ADD)
        secret = crypto.random_bytes(SECRET_BYTES)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            if conn.execute("SELECT 1 FROM integrations WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(
                    f"an integration named {name!r} exists (remove it first to replace its secret)"
                )
            # the id first (the seal binds it), the secret then: both MACed (rowmac)
            integration_id = rowmac.insert(
                conn,
                "integrations",
                {"name": name, "secret_sealed": b"", "created_at": t, "created_by": principal.name},
            )
            assert integration_id is not None  # noqa: S101 - a plain INSERT's row id
            rowmac.update(
                conn,
                "integrations",
                "secret_sealed = ?",
                (self._seal(integration_id, secret),),
                "id = ?",
                (integration_id,),
            )
        self.ctx.record_outcome(principal, Action.INTEGRATION_ADD, "ok", reason=f"integration {name} added")
        return {"name": name, "secret": secret.hex(), "created_at": rfc3339(from_epoch(t))}

    def list(self, principal: Principal) -> list[dict]:
        self.ctx.authorize(principal, Action.INTEGRATION_LIST)
        with self.ctx.db.read() as conn:
            listed = rowmac.select(conn, "integrations", "disabled_at IS NULL", order="name")
            rows = [
                (
                    name,
                    at,
                    by,
                    *conn.execute(
                        "SELECT max(received_at), count(*) FROM integration_events WHERE integration_id = ?",
                        (integration_id,),
                    ).fetchone(),
                )
                for _rowid, integration_id, name, _sealed, at, by, _disabled in listed
            ]
        return [
            {
                "name": n,
                "created_at": rfc3339(from_epoch(c)),
                "created_by": by,
                "last_event_at": rfc3339(from_epoch(last)) if last is not None else None,
                "events": count,
            }
            for n, c, by, last, count in rows
        ]

    def rm(self, principal: Principal, name: str) -> dict:
        """Remove an integration: its secret is destroyed; its events' audit entries stay."""
        self.ctx.authorize(principal, Action.INTEGRATION_RM)
        t = to_epoch(self.ctx.now())
        with self.ctx.db.write() as conn:
            found = rowmac.update(
                conn,
                "integrations",
                "disabled_at = ?, disabled_by = ?, secret_sealed = x'', name = name || '#removed-' || id",
                (t, principal.name),
                "name = ? AND disabled_at IS NULL",
                (name,),
            )
        if not found:
            raise NotFound(f"no integration named {name!r}")
        self.ctx.record_outcome(principal, Action.INTEGRATION_RM, "ok", reason=f"integration {name} removed")
        return {"name": name, "removed_at": rfc3339(from_epoch(t))}

    # --- the webhook ------------------------------------------------------------------------------

    def _enabled(
        self,
        actor: str,
        origin: str,
        name: str,
        refused: Callable[[str, bool], bool] | None,
        alarmed: Callable[[str], bool] | None,
    ) -> tuple[int, bytes] | None:
        """``(id, sealed secret)`` of the enabled integration ``name``, its row MAC verified: a
        row a file writer edited or planted is an integrity failure (409 integrity_failure),
        alarmed as such whatever the refusal throttle says (:meth:`_alarm`) and audited as a
        refused event (unless throttled), never a verified sender."""
        try:
            with self.ctx.db.read() as conn:
                rows = rowmac.select(conn, "integrations", "name = ? AND disabled_at IS NULL", (name,))
        except rowmac.RowTampered as exc:
            self._alarm(actor, origin, exc, alarmed)  # before the throttle: it may raise
            audit = refused is None or refused(name, False)
            reason = "integrity failure: the integration's row failed authentication"
            self._refuse(actor, origin, reason, exc, audit=audit)
        if not rows:
            return None
        _rowid, integration_id, _name, sealed, *_ = rows[0]
        return integration_id, sealed

    def _alarm(
        self, actor: str, origin: str, exc: IntegrityFailure, alarmed: Callable[[str], bool] | None
    ) -> None:
        """The ``integrity.row_failure`` alarm of a row a webhook request met that failed its MAC
        (review5 R5-4), or of an integration's sealed secret that does not open under its id:
        an integrity failure is not a refusal to be summarised, so the refusal
        throttle never keeps it out of the log. ``alarmed(message)`` (the service's
        :meth:`vault.server.routes.Limits.webhook_alarm`) may only dedupe it: False when the
        same alarm was written already this summary round (the repeat is counted instead)."""
        if alarmed is not None and not alarmed(exc.message):
            return
        principal = Principal(name=actor, roles=frozenset({INTEGRATION}), kind="system", origin=origin)
        self.ctx.integrity_alarm(principal, exc, Action.SLA_CONTRACT_EVENT.value)

    def _refuse(
        self, actor: str, origin: str, reason: str, exc: VaultError, *, audit: bool = True
    ) -> NoReturn:
        """Audit a refused event (unless ``audit`` is False: the service's throttle counts it for
        a summary event instead, :meth:`record_throttled`) and raise ``exc``."""
        if audit:
            self.ctx.audit.append(
                actor=actor,
                action=Action.SLA_CONTRACT_EVENT.value,
                outcome="deny",
                reason=reason,
                origin=origin,
            )
        raise exc

    def record_throttled(
        self,
        key: str,
        count: int,
        seconds: float,
        *,
        sources: int = 0,
        integrations: int = 0,
        past_table: bool = False,
    ) -> None:
        """The one audit event that stands for ``count`` refused webhook requests not audited one
        by one over the last ``seconds`` (review S5): ``key`` is ``source:ADDRESS`` (refusals of
        one source past its limit, answered 429 unread), ``integration:NAME`` (refusals claiming
        one integration past its limit, ``?``: unknown names) or ``*``: the ``sources`` and
        ``integrations`` past the round's named ones (review5 R5-3;
        :func:`vault.server.limits.summarise`), ``past_table``: with sources past the throttle's
        table size (not counted apart). ``sla.contract_event`` ``deny``, reason ``throttled: ...``.
        ``alarm:MESSAGE``: an integrity alarm written once this round met ``count`` more times
        (``alarm:*``: alarms past the round's distinct ones; review5 R5-4), an
        ``integrity.row_failure`` ``error`` event; ``waited:MESSAGE``: the alarm itself, by name,
        of a row met ``count`` times that found the round's alarms taken (review8 R8-2)."""
        kind, _, value = key.partition(":")
        seconds = max(1, int(seconds + 0.999))
        times = f"{count} time{'s' * (count != 1)} in {seconds} s"
        if kind in ("alarm", "waited"):
            if kind == "waited":
                what = f"{value} (met {times} while a round's alarms were taken;"
                what += " written by the summary round)"
            elif value == "*":
                what = f"integrity failures of other rows: {times}"
            else:
                what = f"{value} (again {times}; alarmed once a summary round)"
            self.ctx.audit.append(
                actor="integration:?",
                action=AuditEvent.INTEGRITY_ROW_FAILURE.value,
                outcome="error",
                reason=f"{Action.SLA_CONTRACT_EVENT.value}: {what}"[:500],
                origin="api",
            )
            return
        if kind == "source":
            actor, origin = "integration:?", f"api:{value}"
            what = f"from {value}"
        elif kind == "integration":
            actor, origin = f"integration:{value}", "api"
            what = "claiming an unknown integration" if value == "?" else f"claiming integration {value}"
        else:
            actor, origin = "integration:?", "api"
            parts = []
            if sources:
                many = "more than " if past_table else ""
                parts.append(f"from {many}{sources} other source{'s' * (sources != 1 or past_table)}")
            if integrations:
                parts.append(f"claiming {integrations} other integration{'s' * (integrations != 1)}")
            what = " or ".join(parts) or "from other sources (too many to count apart)"
        self.ctx.audit.append(
            actor=actor,
            action=Action.SLA_CONTRACT_EVENT.value,
            outcome="deny",
            reason=f"throttled: {count} refused request{'s' * (count != 1)} {what} in {seconds} s",
            origin=origin,
        )

    def receive(
        self,
        body: bytes,
        headers: dict[str, str],
        *,
        origin: str = "api",
        refused: Callable[[str, bool], bool] | None = None,
        alarmed: Callable[[str], bool] | None = None,
    ) -> dict:
        """One signed contract event (docs/sla.md spells the scheme out): 401 for an unknown
        integration, a bad signature or a timestamp outside the window, 409 for an event id
        applied before (its id is claimed in the transaction that applies it, so a refused event
        leaves no claim and its redelivery is checked again); each refusal and each event
        audited as ``integration:NAME``. An integrations row that fails its MAC, or whose sealed
        secret does not open under its id, is 409 ``integrity_failure``, alarmed and refused.

        ``refused(name, verified)``: asked at each refusal with the claimed integration's name
        (``"?"`` when there is no such integration) and whether the request's signature verified,
        before its audit event is written; False: not written (the service's throttle counts it
        for a summary, :meth:`record_throttled`). It may raise instead (the service's throttle:
        RateLimited for a request whose signature did not verify, from a source past its limit;
        review5 R5-1): nothing is written then. A row that failed its MAC is alarmed
        (``integrity.row_failure``) whatever ``refused`` says; ``alarmed(message)`` may only
        dedupe identical alarms (:meth:`_alarm`; review5 R5-4)."""
        name = headers.get(H_INTEGRATION, "")
        actor = f"integration:{name}" if EVENT_ID.fullmatch(name) else "integration:?"
        row = None
        if EVENT_ID.fullmatch(name):
            row = self._enabled(actor, origin, name, refused, alarmed)
        claimed_name = name if row is not None else "?"
        verified = False

        def refuse(reason: str, exc: VaultError) -> NoReturn:
            audit = refused is None or refused(claimed_name, verified)
            self._refuse(actor, origin, reason, exc, audit=audit)

        if row is None:
            refuse(
                "unknown integration",
                AuthenticationFailed("unknown integration or bad signature"),
            )
        assert row is not None  # noqa: S101 - refused above
        integration_id, sealed = row
        try:
            secret = self._unseal(integration_id, sealed)
        except IntegrityFailure as exc:  # its row MAC verified, yet the seal is not this id's
            self._alarm(actor, origin, exc, alarmed)  # before the throttle: it may raise
            refuse("integrity failure: the integration's secret failed authentication", exc)
        stamp = headers.get(H_TIMESTAMP, "")
        given = headers.get(H_SIGNATURE, "")
        expected = "v1=" + crypto.hmac_sha256(secret, stamp.encode("ascii", "replace") + b"." + body).hex()
        if not crypto.constant_time_equal(given.strip().encode("ascii", "replace"), expected.encode()):
            refuse("bad signature", AuthenticationFailed("unknown integration or bad signature"))
        verified = True  # from here on a refusal is the integration's own (never answered 429)
        now = self.ctx.now()
        if not stamp.isdigit() or abs(to_epoch(now) - int(stamp)) > TIMESTAMP_WINDOW:
            refuse(
                f"timestamp outside the {TIMESTAMP_WINDOW} s window",
                AuthenticationFailed(
                    f"the event's timestamp is not within {TIMESTAMP_WINDOW} s of the vault's clock"
                ),
            )
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("id"), str)
            or not EVENT_ID.fullmatch(doc["id"])
        ):
            refuse(
                "malformed event",
                InvalidInput("the event must be a JSON object with an 'id' (1-128 of A-Z a-z 0-9 . _ : -)"),
            )
        assert isinstance(doc, dict)  # noqa: S101 - refused above
        event_id = doc["id"]
        try:
            contract = _contract(f"event {event_id}", doc)
        except InvalidInput as exc:
            refuse(f"event {event_id}: malformed", exc)
        principal = Principal(name=actor, roles=frozenset({INTEGRATION}), kind="system", origin=origin)
        replayed = f"event {event_id} was already received"
        tampered = f"event {event_id}: integrity failure: the client's row failed authentication"
        with self.ctx.db.read() as conn:  # a redelivery of an applied event: refused before anything
            seen = conn.execute(
                "SELECT 1 FROM integration_events WHERE integration_id = ? AND event_id = ?",
                (integration_id, event_id),
            ).fetchone()
        if seen:
            refuse(f"event {event_id} replayed", Replayed(replayed))
        try:
            plan = self.contracts.plan(contract, now)
        except InvalidInput as exc:
            refuse(f"event {event_id}: {exc.message}", exc)
        except rowmac.RowTampered as exc:  # the client's row (review5 R5-4: alarmed, never skipped)
            self._alarm(actor, origin, exc, alarmed)
            refuse(tampered, exc)
        if plan["change"] == "unknown_client":
            refuse(
                f"event {event_id}: unknown client",
                NotFound(f"no client named {contract.client!r}"),
            )
        self.ctx.authorize(
            principal, Action.SLA_CONTRACT_EVENT, client=self.ctx.client(contract.client), detail=None
        )

        def claim(conn: sqlite3.Connection) -> None:
            """The event's id claimed in the transaction that applies it (webhookfix2): two
            deliveries of one id cannot both apply (the second finds it claimed and its change is
            rolled back), and an event refused or failed before its change committed (a client
            row that failed its MAC, an unknown client, a storage error) leaves no claim, so the
            PSA's redelivery is checked again rather than lost as "replayed"."""
            t = to_epoch(now)
            if not conn.execute(
                "INSERT OR IGNORE INTO integration_events (integration_id, event_id, received_at)"
                " VALUES (?, ?, ?)",
                (integration_id, event_id, t),
            ).rowcount:
                raise Replayed(replayed)
            conn.execute(
                "DELETE FROM integration_events WHERE integration_id = ? AND received_at < ?",
                (integration_id, t - EVENT_DAYS * 86400),
            )

        try:
            self.contracts.apply(
                principal, plan, f"contract ended (event {event_id} from {name})", within=claim
            )
        except Replayed as exc:  # a delivery of the same id applied meanwhile: this one rolled back
            refuse(f"event {event_id} replayed", exc)
        except rowmac.RowTampered as exc:  # the client's row, edited since it was planned
            self._alarm(actor, origin, exc, alarmed)
            refuse(tampered, exc)
        self.ctx.audit.append(
            actor=actor,
            action=Action.SLA_CONTRACT_EVENT.value,
            outcome="ok",
            client=plan["client"],
            reason=f"event {event_id}: {plan['change']} (SLA end {plan['sla_end']} -> {plan['new_sla_end']})",
            origin=origin,
        )
        after = self.ctx.client(plan["client"])
        return {
            "event_id": event_id,
            "integration": name,
            "client": plan["client"],
            "change": plan["change"],
            "sla_end": rfc3339(after.sla_end),
            "state": after.state(self.ctx.now()),
        }
