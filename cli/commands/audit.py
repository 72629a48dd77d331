"""``cvault audit log|verify|export|report|prune|checkpoint|pubkey`` (docs/spec.md §9; docs/audit.md)."""

from __future__ import annotations

import json
import sys

import click

from cli.output import StreamingTable, emit, json_option, progress, safe, table, wants_json
from cli.render import when
from vault import api_spec as spec


def _emit_ascii(data, as_json: bool, human) -> None:
    """Like emit(), but JSON is ASCII-only: a stored U+2028 or bidi control cannot reach a
    terminal or a log collector raw."""
    if wants_json(as_json):
        click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True))
    else:
        human(data)


@click.group("audit")
def audit():
    """Review, verify, export and prune the tamper-evident access log (security reviewers)."""


@audit.command("pubkey")
@click.option(
    "--unverified",
    is_flag=True,
    help="Print the key stored in the clear even though it cannot be checked (sealed vault).",
)
@json_option
@click.pass_obj
def audit_pubkey(state, unverified, as_json):
    """Print the vault's audit public key (give it to reviewers for offline verification).

    Unsealed, the key is derived from the sealed private key. Sealed, only the clear copy in
    vault.db is available, which anyone able to write the folder can replace: the command says
    so and exits 8 unless --unverified."""
    from vault.errors import VaultSealed

    vault = state.vault(unseal=False)
    if not vault.unsealed and not unverified:
        try:
            vault = state.vault()
        except VaultSealed:
            raise VaultSealed(
                "vault sealed: the stored audit public key is unverified (anyone who can write the "
                "vault folder can replace it); unseal to derive it from the sealed private key, "
                "or pass --unverified"
            ) from None
    data = vault.audit.public_key()

    def human(d):
        click.echo(d["public_key"])
        click.echo(f"fingerprint {d['fingerprint']}", err=True)
        if not d["verified"]:
            click.echo("warning: unverified: read from vault.db while sealed", err=True)
        elif d.get("stored_key_matches") is False:
            click.echo(
                "warning: the copy of this key stored in vault.db was replaced; this key is the "
                "one derived from the sealed private key (run 'cvault doctor')",
                err=True,
            )

    emit(data, as_json, human)


@audit.command("recover")
@click.option(
    "--acknowledge",
    "acknowledge",
    required=True,
    type=click.IntRange(*spec.param("audit.recover", "acknowledge").limits),
    metavar="N",
    help="The first bad entry the integrity alarm names (it is in the alarm's line).",
)
@click.option("--totp", help="TOTP code for the step-up (prompted on a terminal).")
@json_option
@click.pass_obj
def audit_recover(state, acknowledge, totp, as_json):
    """Acknowledge an integrity alarm (admin, TOTP step-up): sign the head again and resume.

    Nothing in the log is changed; the recovery checkpoint names the alarm, and 'audit verify'
    reports it from then on (docs/audit.md section 3)."""
    vault = state.vault()
    data = state.with_stepup(lambda p: vault.audit.recover(p, acknowledge), totp)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"integrity alarm acknowledged (first bad entry {d['first_bad_seq']}); "
            f"signed again from entry {d['checkpoint_seq']}"
        ),
    )


@audit.command("log")
@click.option("--user", help="Only events by this actor.")
@click.option("--client", help="Only events about this client.")
@click.option("--action", help="Only this action (e.g. secret.get), or a family (secret or secret.*).")
@click.option("--outcome", type=click.Choice(["allow", "deny", "ok", "error"]), help="Only this outcome.")
@click.option("--since", help="From this time: ISO 8601, or 30d / -30d for 30 days ago.")
@click.option("--until", help="Up to this time: ISO 8601 or a relative form.")
@click.option(
    "--limit",
    # the lower bound and default from the registry; its upper bound only guards the API's integers
    type=click.IntRange(*spec.param("audit.log", "limit").limits),
    default=spec.param("audit.log", "limit").default,
    show_default=True,
    help="Show the newest N matching events (0: all).",
)
@json_option
@click.pass_obj
def audit_log(state, user, client, action, outcome, since, until, limit, as_json):
    """Show audit events, oldest first; record paths of shredded clients read [shredded]."""
    filters = {
        "user": user,
        "client": client,
        "action": action,
        "outcome": outcome,
        "since": since or None,
        "until": until or None,
    }
    if not limit:  # the whole (filtered) log: paged, printed as it comes, memory bounded
        _stream_log(state, filters, as_json)
        return
    rows = state.vault().audit.log(state.principal(), **filters, limit=limit)
    _emit_ascii(rows, as_json, lambda r: table(r, LOG_COLUMNS, empty="(no matching events)"))


LOG_COLUMNS = [
    ("seq", "seq"),
    ("at", "time"),
    ("actor", "actor"),
    ("action", "action"),
    ("client", "client"),
    ("outcome", "outcome"),
    ("reason", "reason"),
    ("detail", "detail"),
]
#: events per request when ``audit log --limit 0`` pages through the log (each page is one
#: audited ``audit.log`` decision)
LOG_PAGE = 5000


def _stream_log(state, filters: dict, as_json: bool) -> None:
    """``--limit 0``: page forward with ``after_seq`` (one request per page, in both modes) and
    print each page as it arrives: the same output as one big answer, in bounded memory."""
    vault, principal = state.vault(), state.principal()
    json_out, after, first = wants_json(as_json), 0, True
    printer = StreamingTable(LOG_COLUMNS)
    while True:
        page = vault.audit.log(principal, **filters, limit=LOG_PAGE, after_seq=after)
        if json_out:
            for row in page:
                item = json.dumps(row, indent=2, sort_keys=True, ensure_ascii=True).replace("\n", "\n  ")
                click.echo(("[\n  " if first else ",\n  ") + item, nl=False)
                first = False
        else:
            printer.rows(page)
        if len(page) < LOG_PAGE:
            break
        after = page[-1]["seq"]
    if json_out:
        click.echo("[]" if first else "\n]")
    elif printer.empty:
        click.echo("(no matching events)")


@audit.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "cef"]),
    default="jsonl",
    show_default=True,
    help="jsonl is verifiable offline; csv and cef are for tools.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="New file to write (created 0600; never overwritten). Default: standard output.",
)
@click.option("--no-details", is_flag=True, help="Leave out the decrypted record paths.")
@click.option(
    "--after-seq",
    type=click.IntRange(*spec.param("audit.export_lines", "after_seq").limits),
    default=None,
    metavar="N",
    help="csv, cef: only entries after sequence number N (a forwarder passes the last one it "
    "sent; --json prints head_seq for the next run).",
)
@click.option(
    "--since",
    default=None,
    help="csv, cef: only entries from this time on: 30d, 12h, ISO 8601.",
)
@json_option
@click.pass_obj
def audit_export(state, fmt, out, no_details, after_seq, since, as_json):
    """Export the log: JSON Lines (the whole log, with the checkpoints and the public key: verifiable
    offline), CSV (RFC 4180) or CEF; csv and cef can start after an entry or a time."""
    from vault.audit.export import line_end

    vault = state.vault()
    options = {"details": not no_details, "after_seq": after_seq, "since": since}
    # no session on the vault's host with its key file: an unattended forwarder (docs/audit.md 5)
    principal = state.principal(allow_system=True, system_name="forwarder")
    if out:
        data = vault.audit.export(principal, fmt, out=out, **options)
        emit(
            data,
            as_json,
            lambda d: click.echo(f"exported {d['entries']} entries ({d['format']}) to {d['file']}", err=True),
        )
    else:
        end = line_end(fmt)
        chunk: list[str] = []  # one write per 512 lines, not one (and a flush) per line

        def write(line: str) -> None:
            chunk.append(line + end)
            if len(chunk) >= 512:
                click.echo("".join(chunk), nl=False)
                chunk.clear()

        try:
            data = vault.audit.export(principal, fmt, write=write, **options)
        finally:  # what was exported before a failure is printed, as line by line
            if chunk:
                click.echo("".join(chunk), nl=False)
        if as_json:  # the lines are on stdout: the result goes to stderr
            click.echo(json.dumps(data, sort_keys=True), err=True)


def _print_result(d: dict) -> None:
    if d["ok"]:
        span = f"entries {d['first_seq']}-{d['last_seq']}" if d["entries"] else "no entries"
        signed = (
            f"signed up to entry {d['signed_up_to']}"
            if d["signed_up_to"] is not None
            else "no signed checkpoint"
        )
        click.echo(
            f"audit verify: ok: {d['entries']} entries ({span}), {d['checkpoints']} checkpoints, {signed}"
        )
        if d.get("base_seq"):
            click.echo(f"  log pruned: starts after entry {d['base_seq']} (signed prune checkpoint)")
        click.echo(f"  public key {d['public_key']}")
    for w in d["warnings"]:
        click.echo(f"warning: {safe(w)}", err=True)


@audit.command("verify")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False, exists=True),
    help="Verify a JSON Lines export offline (no vault, no key needed).",
)
@click.option("--pubkey", help="The audit public key you trust (ed25519:<base64>, or a file holding it).")
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="A checkpoint kept elsewhere (blob-store copy or 'audit checkpoint --json' output).",
)
@click.option(
    "--all-signatures",
    is_flag=True,
    help="Check every checkpoint's signature, not only those the verdict depends on.",
)
@click.option(
    "--trust-embedded-key",
    is_flag=True,
    help="With --file and no --pubkey: verify with the key inside the export (whoever rewrote "
    "the export could have replaced it; compare its fingerprint with the one noted at init).",
)
@json_option
@click.pass_obj
def audit_verify(state, file, pubkey, checkpoint_files, all_signatures, trust_embedded_key, as_json):
    """Verify the hash chain and the signed checkpoints; names the first bad entry (exit 6)."""
    from vault.errors import IntegrityFailure, InvalidInput

    if file is None and (pubkey or checkpoint_files or trust_embedded_key):
        raise InvalidInput(
            "--pubkey, --checkpoint and --trust-embedded-key need --file (the live log uses the vault's key)"
        )
    if file is not None and not pubkey and not trust_embedded_key:
        raise InvalidInput(
            "audit verify --file needs --pubkey KEY (from 'cvault audit pubkey' run by someone you "
            "trust), or --trust-embedded-key to use the key inside the export"
        )
    if file is not None and pubkey and trust_embedded_key:
        raise InvalidInput("give --pubkey or --trust-embedded-key, not both")
    if file is not None:
        from pathlib import Path

        from vault.audit.verify import verify_export

        key_text = None
        if pubkey:
            p = Path(pubkey)
            key_text = p.read_text().strip() if p.is_file() else pubkey
        extra = []
        for path in checkpoint_files:
            try:
                extra.append(json.loads(Path(path).read_text()))
            except ValueError:
                raise InvalidInput(f"{path} is not a checkpoint (JSON)") from None
        with (
            open(file, encoding="utf-8", errors="surrogateescape") as fh,
            progress("verifying audit export") as update,
        ):
            result = verify_export(
                fh,
                public_key_text=key_text,
                extra_checkpoints=extra,
                progress=update,
                all_signatures=all_signatures,
            )
    else:
        vault = state.vault()
        with progress("verifying audit log") as update:
            result = vault.audit.verify(state.principal(), progress=update, all_signatures=all_signatures)
    data = result.as_dict()
    if wants_json(as_json):
        _emit_ascii(data, True, None)
        if not result.ok:
            sys.exit(6)
        return
    if not result.ok:
        raise IntegrityFailure(f"audit verify: {safe(result.problem)}")
    _print_result(data)


@audit.command("checkpoint")
@json_option
@click.pass_obj
def audit_checkpoint(state, as_json):
    """Sign the log's head now; keep the --json output somewhere else to catch truncation."""
    data = state.vault().audit.checkpoint(state.principal())
    emit(data, as_json, lambda d: click.echo(f"checkpoint at entry {d['seq']}: {d['entry_hash']}"))


@audit.command("report")
@click.option(
    "--since", default="30d", show_default=True, help="Window start (30d = 30 days ago, or ISO 8601)."
)
@click.option("--until", help="Window end (default now).")
@click.option("--full", is_flag=True, help="List every entry of every section (default: the first 100 each).")
@json_option
@click.pass_obj
def audit_report(state, since, until, full, as_json):
    """Access per user and client, refusals, identity alarms, off-hours, bursts, admin changes, shreds."""
    data = state.vault().audit.report(state.principal(), since=since, until=until or None, full=full)
    _emit_ascii(data, as_json, _print_report)


def _section(title: str) -> None:
    click.echo("")
    click.echo(title)
    click.echo("-" * len(title))


def _more(d: dict, section: str) -> None:
    """The line under a section the report cut (docs/audit.md section 8)."""
    hidden = d.get("totals", {}).get(section, 0) - len(d[section])
    if hidden > 0:
        click.echo(f"... and {hidden:,} more: --full lists them all")


def _print_report(d: dict) -> None:
    w, s = d["window"], d["settings"]
    click.echo(f"Audit report {when(w['since'])} .. {when(w['until'])} ({w['events']} events)")
    access_cols = [
        ("reads", "reads"),
        ("writes", "writes"),
        ("other", "other"),
        ("denied", "denied"),
        ("total", "total"),
    ]
    sod = d.get("separation_of_duties") or {}
    if sod.get("single_operator"):
        click.echo("SINGLE-OPERATOR VAULT: the two-person rules are off (init --single-operator)")
    for step in sod.get("bootstrap_steps", []):
        click.echo(
            f"bootstrap step: admin {safe(step['user'])} activated by {safe(step['activated_by'])} "
            f"alone, {when(step['at'])}"
        )
    _section("Access per user")
    table(d["access_per_user"], [("user", "user"), *access_cols])
    _section("Access per client")
    table(d["access_per_client"], [("client", "client"), *access_cols])
    _section("Refusals by reason")
    table(d["refusals_by_reason"], [("count", "count"), ("reason", "reason")])
    _section("Identity")
    labels = {
        "failed_logins": "failed logins",
        "failed_stepups": "failed step-ups",
        "lockouts": "lockouts",
        "totp_replays": "TOTP replays",
        "recovery_codes": "recovery-code uses",
    }
    rows = [
        {"what": labels[k], "user": r["user"], "count": r["count"]}
        for k, v in d["identity"].items()
        for r in v
    ]
    table(rows, [("what", "event"), ("user", "user"), ("count", "count")])
    event_cols = [
        ("seq", "seq"),
        ("at", "time"),
        ("actor", "user"),
        ("action", "action"),
        ("client", "client"),
        ("outcome", "outcome"),
        ("reason", "reason"),
    ]
    _section(f"Off-hours access (outside {s['business_hours']} {s['business_days']}, {s['timezone']})")
    table(d["off_hours_access"], event_cols[:6])
    _more(d, "off_hours_access")
    _section(
        f"Bursts (> {s['burst_reads']} reads or > {s['burst_clients']} clients in {s['burst_minutes']} min)"
    )
    table(
        [{**b, "clients": ", ".join(b["clients"])} for b in d["bursts"]],
        [
            ("user", "user"),
            ("start", "from"),
            ("end", "to"),
            ("reads", "reads"),
            ("clients", "clients"),
            ("kind", "why"),
        ],
    )
    _more(d, "bursts")
    _section("Attempts after an assignment ended")
    table(d["after_assignment_ended"], event_cols)
    _more(d, "after_assignment_ended")
    _section("Admin changes")
    table(d["admin_changes"], event_cols)
    _more(d, "admin_changes")
    _section("Shreds")
    table(
        [{**e, "certificate": (e["certificate"] or {}).get("digest", "")} for e in d["shreds"]],
        [
            ("seq", "seq"),
            ("at", "time"),
            ("client", "client"),
            ("outcome", "outcome"),
            ("certificate", "certificate sha256"),
        ],
    )
    _more(d, "shreds")


@audit.command("prune")
@click.option("--before", required=True, help="Delete entries older than this (ISO 8601 or 365d).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def audit_prune(state, before, yes, as_json):
    """Delete old entries up to a checkpoint; the log stays verifiable from a signed base."""
    vault = state.vault()
    if not yes:
        if not sys.stdin.isatty():
            from vault.errors import InvalidInput

            raise InvalidInput("audit prune deletes entries: confirm with --yes")
        click.confirm(f"Delete audit entries older than {before} (up to a checkpoint)?", abort=True, err=True)
    data = vault.audit.prune(state.principal(), before)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"pruned {d['pruned']} entries; the log now starts after entry {d['base_seq']}"
            if d["pruned"]
            else "nothing to prune (no checkpoint older than that date)"
        ),
    )
