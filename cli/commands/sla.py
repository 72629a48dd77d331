"""``cvault sla show|renew|expire|request-shred|approve-shred|min-grace|approve-min-grace|upcoming|sweep|
certificate|import``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.output import emit, fields_block, json_option, progress, safe, table
from cli.render import when
from vault import api_spec as spec
from vault.errors import InvalidInput


@click.group("sla")
def sla():
    """SLA lifecycle: renew, expire, early shred, sweep, shred certificates."""


def _human_view(d: dict) -> None:
    fields_block(
        {
            "client": d["client"],
            "state": d["state"],
            "sla end": d["sla_end"],
            "grace": f"{d['grace_days']} days",
            **({"shred due": d["shred_due"]} if d.get("shred_due") else {}),
            **(
                {
                    "shred request": (
                        f"by {d['shred_request']['requested_by']} at "
                        f"{when(d['shred_request']['requested_at'])}: "
                        f"{d['shred_request']['status']}"
                    )
                }
                if d.get("shred_request")
                else {}
            ),
            **(
                {"shred": f"step {d['shred']['step']}, started {when(d['shred']['started_at'])}"}
                if d.get("shred")
                else {}
            ),
            **({"certificate": f"sha256 {d['certificate_sha256']}"} if d.get("certificate_sha256") else {}),
        }
    )


@sla.command("show")
@click.argument("client")
@json_option
@click.pass_obj
def sla_show(state, client, as_json):
    """Show a client's SLA state, grace period, shred request and shred progress."""
    emit(state.vault().sla.show(state.principal(), client), as_json, _human_view)


@sla.command("renew")
@click.argument("client")
@click.option(
    "--until",
    required=True,
    help="New SLA end: ISO 8601 (2027-03-31T17:00+02:00) or +365d. "
    "A bare date (2027-03-31) means the end of that day "
    "(23:59:59) in the vault's time zone (init --time-zone; default UTC).",
)
@click.option(
    "--grace-days",
    type=click.IntRange(*spec.param("sla.renew", "grace_days").limits),
    default=None,
    help="Also change the grace period before shredding (days).",
)
@json_option
@click.pass_obj
def sla_renew(state, client, until, grace_days, as_json):
    """Set a new SLA end (cancels a pending early-shred request)."""
    data = state.vault().sla.renew(state.principal(), client, until, grace_days=grace_days)

    def human(d):
        click.echo(
            f"client {safe(d['client'])}: SLA renewed until {when(d['sla_end'])} "
            f"(grace {d['grace_days']} days)"
        )
        if d["cancelled_shred_request"]:
            click.echo("the pending early-shred request was cancelled")

    emit(data, as_json, human)


@sla.command("expire")
@click.argument("client")
@click.option("--reason", required=True, help="Why the SLA ends now (written to the audit log).")
@json_option
@click.pass_obj
def sla_expire(state, client, reason, as_json):
    """End the SLA now: access is refused at once; shredding follows after the grace period."""
    data = state.vault().sla.expire(state.principal(), client, reason=reason)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"client {safe(d['client'])}: SLA ended at {when(d['sla_end'])}; shred due {when(d['shred_due'])}"
        ),
    )


@sla.command("request-shred")
@click.argument("client")
@click.option("--reason", required=True, help="Why the client must be shredded early.")
@json_option
@click.pass_obj
def sla_request_shred(state, client, reason, as_json):
    """Request an early shred (a second admin or account manager must approve it)."""
    data = state.vault().sla.request_shred(state.principal(), client, reason=reason)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"early shred of {safe(d['client'])} requested; it needs approval by another admin or "
            "account manager ('cvault sla approve-shred')"
        ),
    )


@sla.command("approve-shred")
@click.argument("client")
@json_option
@click.pass_obj
def sla_approve_shred(state, client, as_json):
    """Approve another person's early-shred request: the next sweep shreds the client."""
    data = state.vault().sla.approve_shred(state.principal(), client)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"early shred of {safe(d['client'])} approved; the next 'cvault sla sweep' shreds it"
        ),
    )


@sla.command("upcoming")
@click.option(
    "--within", default="30d", show_default=True, help="Window: a duration such as 30d, 12w or 48h."
)
@json_option
@click.pass_obj
def sla_upcoming(state, within, as_json):
    """SLA ends and shreds due soon (and shreds overdue or unfinished)."""
    rows = state.vault().sla.upcoming(state.principal(), within)
    emit(
        rows,
        as_json,
        lambda r: table(
            r,
            [
                ("at", "when"),
                ("client", "client"),
                ("event", "event"),
                ("state", "state"),
                ("shred_due", "shred due"),
            ],
            empty=f"nothing due within {within}",
        ),
    )


def sweep_principal(state):
    """The logged-in user if there is a session; otherwise ``system:sweep`` (unattended runs: cron
    or a systemd timer with CVAULT_KEY_FILE -- holding the unseal key is the authority)."""
    return state.principal(allow_system=True, system_name="sweep")


@sla.command("sweep")
@click.option("--dry-run", is_flag=True, help="List what would be shredded; change nothing.")
@click.option(
    "--every",
    metavar="DURATION",
    default="1h",
    show_default=True,
    help="How often this sweep is scheduled (cron, timer): doctor warns when the last successful "
    "sweep is older than that.",
)
@json_option
@click.pass_obj
def sla_sweep(state, dry_run, every, as_json):
    """Shred every client due (idempotent; one sweep at a time; exit 0 when nothing is due).

    A sweep started while another runs exits 0 at once, saying so. A shred left unfinished
    exits 1 with one line on stderr (the next sweep resumes it). Every run prints one line with
    its time, for the timer's or cron's log."""
    from vault.sla.shred import ShredIncomplete

    vault = state.vault()
    with progress("shredding") as update:
        data = vault.sla.sweep(sweep_principal(state), dry_run=dry_run, progress=update, every=every)

    def human(d):
        if d["skipped"]:
            click.echo(f"sweep skipped: {d['skipped']}")
        elif d["dry_run"]:
            if not d["due"]:
                click.echo("nothing due")
            for item in d["due"]:
                click.echo(f"would {item['action']}: {safe(item['client'])}")
        elif not d["due"]:
            click.echo("nothing due")
        else:
            for name in d["shredded"]:
                click.echo(f"shredded {safe(name)} (certificate: cvault sla certificate {safe(name)})")
        if not d["dry_run"] and not d["skipped"]:
            # one line per run on stderr, with its time: what a cron log or the journal keeps
            import datetime

            stamp = when(datetime.datetime.now(datetime.UTC))
            outcome = f"{len(d['failed'])} unfinished" if d["failed"] else "ok"
            click.echo(
                f"cvault sla sweep {stamp}: {len(d['shredded'])} shredded, {outcome}",
                err=True,
            )

    emit(data, as_json, human)
    if data["failed"]:
        first = data["failed"][0]
        raise ShredIncomplete(
            f"{len(data['failed'])} shred(s) unfinished; {first['client']}: {first['error']}"
        )


@sla.command("certificate")
@click.argument("client", required=False)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Also write the certificate file (verifiable offline) here.",
)
@click.option(
    "--verify",
    "verify_file",
    type=click.Path(dir_okay=False),
    help="Verify a certificate file offline instead (needs --pubkey; no vault needed).",
)
@click.option("--pubkey", help="Trusted audit public key: ed25519:<base64>, or a file holding it.")
@json_option
@click.pass_obj
def sla_certificate(state, client, out, verify_file, pubkey, as_json):
    """Print a shredded client's signed certificate, or verify a certificate file offline.

    Exit 6 when the signature does not verify."""
    if verify_file:
        _verify(verify_file, pubkey, as_json)
        return
    if not client:
        raise click.UsageError("give CLIENT, or --verify FILE --pubkey KEY")
    doc = state.vault().sla.certificate(state.principal(), client)
    if out:
        from vault.home import write_private_file

        file_doc = {k: v for k, v in doc.items() if k != "live_status"}
        write_private_file(Path(out), (json.dumps(file_doc, indent=2, sort_keys=True) + "\n").encode())
    emit(doc, as_json, _human_certificate)


def _verify(path: str, pubkey: str | None, as_json: bool) -> None:
    from vault.audit.signing import parse_public_key_text
    from vault.errors import InvalidInput
    from vault.sla.certificate import verify_document
    from vault.sla.service import load_certificate_file

    if not pubkey:
        raise click.UsageError("--verify needs --pubkey (the vault's audit public key)")
    text = pubkey
    if not pubkey.strip().startswith("ed25519:") and Path(pubkey).is_file():
        try:
            text = Path(pubkey).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise InvalidInput(f"cannot read public key file {pubkey}") from None
    body = verify_document(load_certificate_file(path), parse_public_key_text(text))
    data = {
        "valid": True,
        "client": body["client"]["name"],
        "client_id": body["client"]["id"],
        "issued": body["timestamps"]["issued"],
    }
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"certificate valid: client {safe(d['client'])} shredded, issued {when(d['issued'])}"
        ),
    )


_STEPS = [
    "shred_started",
    "keys_destroyed",
    "custody_destroyed",
    "database_scrubbed",
    "blobs_deleted",
    "metadata_purged",
    "issued",
]


def _human_certificate(doc: dict) -> None:
    c = doc["certificate"]
    keys = c["keys_destroyed"]
    blobs = c["destroyed"]["blobs"]
    lines = {
        "certificate": f"cvault shred certificate v{c['version']}",
        "client": f"{c['client']['name']} ({c['client']['id']})",
        "sla end": c["sla"]["end"],
        "grace": f"{c['sla']['grace_days']} days (shred due {when(c['sla']['shred_due'])})",
        "trigger": c["trigger"],
        "requested by": c["requested_by"] + (f" at {when(c['requested_at'])}" if c["requested_at"] else ""),
        "approved by": c["approved_by"] + (f" at {when(c['approved_at'])}" if c["approved_at"] else ""),
        "performed by": c["performed_by"],
        "client keys": ", ".join(f"v{k['version']} {k['fingerprint']}" for k in keys["client_keys"])
        or "(none)",
        "record keys": str(keys["record_keys"]),
        "audit detail key": keys["audit_detail_key"]["fingerprint"] if keys["audit_detail_key"] else "(none)",
        "records": f"{c['destroyed']['records']} ({c['destroyed']['record_versions']} versions)",
    }
    for b in blobs:
        if "deleted" in b:
            lines[f"blobs {b['location']}"] = (
                f"{b['blobs']}: {b['deleted']} deleted, {b['already_absent']} already absent"
            )
        else:
            lines["blobs remote"] = (
                f"{b['blobs']}: {b['permanent_deletes_queued']} permanent deletes "
                f"queued, {b['pending_at_issue']} pending at issue, "
                f"{doc['live_status']['remote_deletes_pending']} pending now"
            )

    # in the order things happened (the stored document's keys are sorted by name); within one
    # second, in the order of the shred's steps (docs/sla.md section 3)
    def _moment(item: tuple[str, str | None]) -> tuple:
        step = _STEPS.index(item[0]) if item[0] in _STEPS else len(_STEPS)
        return (item[1] is None, when(item[1]), step)

    for key, value in sorted(c["timestamps"].items(), key=_moment):
        lines[key.replace("_", " ")] = value
    v = c["verification"]
    lines["verification"] = (
        f"{'passed' if v['ok'] else 'FAILED'}: client-key unwrap "
        f"{v['client_key_unwrap']}; {v['wrapped_key_search']['found']} of "
        f"{v['wrapped_key_search']['keys_searched']} wrapped keys found in "
        f"{', '.join(v['wrapped_key_search']['files'])}"
    )
    for i, entry in enumerate(c.get("custody") or [], 1):
        lines[f"custody {i}"] = (
            f"v{entry['version']} {entry['destroyed']}; gone for good {when(entry['gone_for_good_at'])}"
        )
    lines["audit head"] = f"seq {c['audit_head']['seq']} sha256 {c['audit_head']['hash']}"
    lines["signature"] = doc["signature"]
    lines["signed by"] = doc["public_key"]
    fields_block(lines)
    undo = c.get("can_still_undo") or []
    if undo:
        click.echo("")
        click.echo("What can still undo this shred (destroy these; docs/sla.md section 6):")
        for line in undo:
            click.echo(f"  - {safe(line)}")


@sla.command("min-grace")
@click.argument(
    "days", required=False, type=click.IntRange(*spec.param("sla.request_min_grace", "days").limits)
)
@json_option
@click.pass_obj
def sla_min_grace(state, days, as_json):
    """Show the vault's minimum grace period, or request a change to DAYS (a second person,
    outside your lineage, approves it with 'cvault sla approve-min-grace')."""
    vault = state.vault()
    if days is None:
        data = vault.sla.min_grace(state.principal())
    else:
        data = vault.sla.request_min_grace(state.principal(), days)

    def human(d):
        click.echo(f"minimum grace period: {d['min_grace_days']} days")
        if d["pending"]:
            p = d["pending"]
            click.echo(
                f"pending change to {p['value']} days, requested by {safe(p['requested_by'])} "
                f"{when(p['requested_at'])}: another admin or account manager runs "
                f"'cvault sla approve-min-grace {p['value']}'"
            )

    emit(data, as_json, human)


@sla.command("approve-min-grace")
@click.argument("days", type=click.IntRange(*spec.param("sla.approve_min_grace", "days").limits))
@json_option
@click.pass_obj
def sla_approve_min_grace(state, days, as_json):
    """Approve another person's pending change of the minimum grace period to DAYS (the value
    'cvault sla min-grace' shows): refused, exit 4, if the pending change is to anything else."""
    data = state.vault().sla.approve_min_grace(state.principal(), days)
    emit(data, as_json, lambda d: click.echo(f"minimum grace period now {d['min_grace_days']} days"))


@sla.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show the diff per client; change nothing.")
@json_option
@click.pass_obj
def sla_import(state, file, dry_run, as_json):
    """SLA ends from a PSA export: CSV (client, contract_end[, renewal]) or a JSON array.

    Every row is checked before anything changes. A later end renews, an earlier one shortens, an
    end in the past expires the SLA exactly like `sla expire` (the shred waits for the grace
    period). Unknown clients are listed, never created."""
    try:
        text = Path(file).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{file}: not UTF-8 text") from None
    data = state.vault().contracts.import_contracts(state.principal(), text.splitlines(), dry_run=dry_run)

    def human(d):
        if d["dry_run"]:
            click.echo("dry run: nothing changed")
        verbs = {
            "extend": "renewed",
            "shorten": "shortened",
            "end": "ended (like sla expire)",
            "unchanged": "unchanged",
            "shredded": "skipped: shredded",
            "unknown_client": "unknown client (not created)",
        }
        for r in d["rows"]:
            change = verbs[r["change"]]
            if r["change"] in ("extend", "shorten", "end"):
                change = ("would be " if d["dry_run"] else "") + change
                change += f": {when(r['sla_end'])} -> {when(r['new_sla_end'])}"
            click.echo(f"{safe(r['client'])} ({r['where']}): {change}")
        if d["unknown_clients"]:
            click.echo("unknown clients: " + ", ".join(safe(c) for c in d["unknown_clients"]), err=True)

    emit(data, as_json, human)
