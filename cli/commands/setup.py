"""``cvault init``, ``cvault doctor`` and ``cvault upgrade``."""

from __future__ import annotations

import json
import sys

import click

from cli.output import emit, json_option
from cli.render import (
    prompt_new_passphrase,
    qr_file_options,
    refuse_existing_qr_files,
    show_enrollment,
    write_qr_file,
)
from cli.state import host_only, read_secret_file
from cli.text import safe
from vault.errors import InvalidInput


@host_only
@click.command("init")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False),
    help="Read the passphrase from this file instead of a prompt.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    help="Also create a key-file unseal slot; the new key file is written here (0600).",
)
@click.option("--no-passphrase", is_flag=True, help="Create no passphrase slot (needs --key-file).")
@click.option(
    "--admin",
    "admin",
    metavar="NAME",
    help="Create and enroll the first admin (password, TOTP secret, recovery codes).",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the first admin's new password from standard input."
)
@click.option(
    "--custody-file",
    type=click.Path(dir_okay=False),
    envvar="CVAULT_CUSTODY_FILE",
    help="Local custody file, outside the vault folder (default: next to the key file, else the "
    "user config folder).",
)
@click.option(
    "--single-operator",
    is_flag=True,
    help="One-person shop: the two-person rules are off (the admin gets every role); doctor, "
    "audit report and shred certificates say so. Needs --admin.",
)
@click.option(
    "--name",
    "vault_name",
    metavar="NAME",
    help="The vault's name: the issuer people see in their authenticator app, the CEF dvchost "
    "(default: cvault- and the first 8 hex digits of the vault id).",
)
@click.option(
    "--totp-issuer",
    metavar="TEXT",
    help="The issuer of TOTP secrets in authenticator apps, if not the vault's name.",
)
@click.option(
    "--time-zone",
    metavar="ZONE",
    default="UTC",
    show_default=True,
    help="IANA time zone in which a date without a time (--sla-end 2027-03-31) means the end of "
    "that day (23:59:59 there).",
)
@qr_file_options
@json_option
@click.pass_obj
def init_cmd(
    state,
    passphrase_file,
    key_file,
    no_passphrase,
    admin,
    password_stdin,
    custody_file,
    vault_name,
    totp_issuer,
    time_zone,
    qr_png,
    qr_svg,
    single_operator,
    as_json,
):
    """Create a new vault and print its recovery key (shown once); with --admin, enroll the
    first admin."""
    from cli.state import read_password
    from vault.facade import Vault

    if single_operator and not admin:
        raise InvalidInput("--single-operator needs --admin NAME (the one operator)")
    if password_stdin and not admin:
        raise InvalidInput("--password-stdin is for the first admin's password: add --admin NAME")
    if (qr_png or qr_svg) and not admin:
        raise InvalidInput("--qr-png and --qr-svg draw the first admin's TOTP code: add --admin NAME")
    refuse_existing_qr_files(qr_png, qr_svg)
    from vault.settings import check_settings

    settings = check_settings(vault_name=vault_name, totp_issuer=totp_issuer, time_zone=time_zone)

    passphrase = None
    if not no_passphrase:
        if passphrase_file:
            passphrase = read_secret_file(passphrase_file, "passphrase")
        elif sys.stdin.isatty():
            passphrase = prompt_new_passphrase()
        elif not key_file:
            raise InvalidInput("no passphrase: use --passphrase-file, a terminal, or --key-file")
    elif not key_file:
        raise InvalidInput("--no-passphrase needs --key-file")
    admin_password = None
    if admin:
        from vault.identity.factors import check_password_rules
        from vault.names import user_name

        user_name(admin)
        admin_password = read_password(password_stdin, f"New password for {admin}", confirm=True)
        check_password_rules(admin_password)
    vault, result = Vault.init(
        state.home,
        passphrase=passphrase,
        key_file=key_file,
        admin=admin,
        admin_password=admin_password,
        custody_file=custody_file,
        settings=settings,
        single_operator=single_operator,
    )
    from vault.custody.local import LocalCustodian

    custodian = vault.ctx.custody.custodian(vault.ctx.custody.current_id())
    custody = custodian.path if isinstance(custodian, LocalCustodian) else None  # a new vault's is local
    vault.close()
    data = {
        "home": str(state.home),
        "vault_id": result.vault_id,
        "recovery_key": result.recovery_key,
        "slots": result.slots,
        "custody_file": str(custody),
        "single_operator": single_operator,
        "audit_key_fingerprint": result.audit_fingerprint,
    }
    if result.admin:
        data.update(
            admin=result.admin["name"],
            otpauth_uri=result.admin["otpauth_uri"],
            recovery_codes=result.admin["recovery_codes"],
        )

    def human(d):
        click.echo(f"Vault created at {d['home']}")
        for slot in d["slots"]:
            click.echo(f"  slot {slot['id']}: {slot['label']}")
        click.echo(f"Custody file: {d['custody_file']}")
        click.echo("  (opening any client needs it; keep it out of generic backups of the vault folder:")
        click.echo("   docs/sla.md section 6)")
        click.echo("")
        click.echo("Recovery key (shown once; store it offline, it opens the vault):")
        click.echo(f"  {d['recovery_key']}")
        click.echo("")
        click.echo(f"Audit key fingerprint: {d['audit_key_fingerprint']}")
        click.echo("  (note it where reviewers can find it: exports and certificates carry it, and")
        click.echo("   'cvault audit pubkey' must show the same: docs/audit.md section 6)")
        if d["single_operator"]:
            click.echo("")
            click.echo("Single-operator vault: the two-person rules are off (doctor, the audit report and")
            click.echo("every shred certificate say so).")
        if result.admin:
            click.echo("")
            show_enrollment(result.admin, qr_png, qr_svg)
        else:
            click.echo("")
            click.echo("No admin was enrolled (use 'cvault init --admin NAME' to create one).")

    emit(data, as_json, human)
    if as_json and result.admin:
        for path, kind in ((qr_png, "png"), (qr_svg, "svg")):
            if path:
                write_qr_file(result.admin["otpauth_uri"], path, kind)


@host_only
@click.command("doctor")
@json_option
@click.pass_obj
def doctor_cmd(state, as_json):
    """Check permissions, schema, every blob's header and tag, orphans and the audit chain."""
    vault = state.vault()
    report = vault.maintenance.doctor(state.principal(allow_system=True, system_name="doctor"))

    def human(d):
        click.echo(
            f"checked {d['checked_records']} records, {d['checked_blobs']} blobs, "
            f"{d['audit_entries']} audit entries"
        )
        for p in d["problems"]:
            click.echo(f"PROBLEM  {p}")
        for w in d["warnings"]:
            click.echo(f"warning  {w}")
        click.echo("ok" if d["ok"] else f"{len(d['problems'])} problem(s) found")

    emit(report.as_dict(), as_json, human)
    if not report.ok:
        sys.exit(6)


#: role holders the upgrade summary names per role (the rest are counted; --json lists all)
_HOLDERS_SHOWN = 20


def _policy_lines(policy: dict) -> list[str]:
    """The MACed meta rows the upgrade authenticates, as values (review4 R4-2)."""
    single = "no"
    if policy["single_operator"]:
        single = "YES (two-person rules off)"
        if not policy["single_operator_recorded_at_init"]:
            single += (
                ", NOT recorded by this vault's init in its audit log: planted? check before authenticating"
            )
    lines = [
        f"single-operator mode: {single}",
        f"two admins recorded: {'yes' if policy['two_admins'] else 'no'}",
    ]
    changed = policy["settings_changed"]
    shown = ", ".join(f"{safe(str(k))}={safe(json.dumps(v))}" for k, v in changed.items())
    lines.append(f"settings that differ from the defaults: {shown or 'none'}")
    return lines


def _custody_lines(custody: dict) -> list[str]:
    """The custody rows the upgrade authenticates: custodians, version states, jobs (review4 R4-2)."""
    lines = [
        f"custodian {c['id']} ({safe(str(c['kind']))}{', retired' if c['retired'] else ''}):"
        f" {safe(str(c['config']))}"
        for c in custody["custodians"]
    ]
    states: dict[str, int] = {}
    for version in custody["versions"]:
        states[str(version["state"])] = states.get(str(version["state"]), 0) + 1
    counted = ", ".join(f"{safe(state)} {n}" for state, n in sorted(states.items()))
    lines.append(f"custody versions: {counted or 'none'} (each in --json)")
    lines.extend(
        f"custody job: client {safe(str(j['client_id']))} {safe(str(j['reason']))}"
        f" version {j['from_version']} -> {j['to_version']}, step {safe(str(j['step']))}"
        for j in custody["jobs"]
    )
    return lines


@host_only
@click.command("upgrade")
@click.option("--yes", is_flag=True, help="Authenticate without asking; needs --digest.")
@click.option(
    "--digest",
    "digest",
    metavar="DIGEST",
    help="The digest the summary printed: only the rows that summary showed are authenticated.",
)
@json_option
@click.pass_obj
def upgrade_cmd(state, yes, digest, as_json):
    """Authenticate, once, the rows and audit key an older cvault left (docs/format.md "Upgrades").

    Nothing older is ever authenticated automatically: a file writer could have stripped the MACs
    to have them recomputed over rows he planted. Check the summary first; the upgrade then
    authenticates exactly the rows it showed (its digest), or nothing."""
    vault = state.vault(unseal=False)
    summary = vault.ctx.upgrade_summary()
    if not as_json:
        without = ", ".join(f"{t} {n}" for t, n in summary["rows_without_mac"].items()) or "none"
        click.echo(f"rows without a MAC: {without}", err=True)
        if summary["replica_config"] is not None:
            # the credential file and the hosts it is sent to (review4 R4-4): the values, not a count
            click.echo(
                f"replica configuration (remote.onedrive): {safe(summary['replica_config'])}", err=True
            )
        for role, names in summary["role_holders"].items():
            shown = ", ".join(safe(n) for n in names[:_HOLDERS_SHOWN])
            more = f" and {len(names) - _HOLDERS_SHOWN} more (--json)" if len(names) > _HOLDERS_SHOWN else ""
            click.echo(f"{role} ({len(names)}): {shown}{more}", err=True)
        click.echo(
            f"audit log: {summary['audit_entries']} entries, {summary['audit_checkpoints']} checkpoints",
            err=True,
        )
        for line in _policy_lines(summary["policy"]) + _custody_lines(summary["custody"]):
            click.echo(line, err=True)
        click.echo(f"digest: {summary['digest']}", err=True)
    if yes and digest is None:
        raise InvalidInput(
            "cvault upgrade --yes needs --digest DIGEST, the digest its summary printed (run cvault"
            " upgrade to see it): only the rows that summary showed are authenticated"
        )
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput(
                "cvault upgrade authenticates these rows as they are: check them, then run"
                f" cvault upgrade --yes --digest {summary['digest']}"
            )
        click.confirm("Authenticate these rows as they are now?", abort=True, err=True)
        digest = summary["digest"]
    vault = state.vault(upgrade=True, upgrade_digest=digest)
    done = getattr(vault, "upgraded", [])
    emit(
        {"upgraded": done, **summary},
        as_json,
        lambda d: click.echo("; ".join(d["upgraded"]) if d["upgraded"] else "nothing to upgrade"),
    )
