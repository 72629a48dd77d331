"""``cvault demo``: a throwaway vault in a temporary folder, walking through the whole story.

Each step runs the real ``cvault`` command in a subprocess, exactly as a user would type it, and
prints the command and its output. The demo fails (exit 1) if any step's exit code is not the one
the story expects, so it doubles as an end-to-end smoke test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from cli.state import host_only
from vault.hardening import CHILD_CWD, python_argv

PASSWORDS = {
    "alice": "alice-demo-password",
    "ann": "ann-demo-password",
    "mark": "mark-demo-password",
    "amy": "amy-demo-password",
    "bob": "bob-demo-password",
    "carl": "carl-demo-password",
    "rita": "rita-demo-password",
}


@dataclass
class Step:
    title: str
    #: argv after ``cvault``; a callable gets the values captured so far (codes, URIs)
    args: list[str] | Callable[[Captured], list[str]]
    #: standard input; a callable gets the values captured so far (an enrollment code)
    stdin: str | Callable[[Captured], str] | None = None
    expect: int = 0
    #: whose session file the step uses (each person has their own CVAULT_SESSION_FILE)
    user: str | None = None
    #: called with the captured values and the step's stdout, to remember codes and URIs
    capture: Callable[[Captured, str], None] | None = None


class Captured(dict):
    """Values a later step needs: enrollment codes, otpauth URIs (the demo plays every person)."""

    def totp(self, user: str) -> str:
        from vault.identity import totp  # the demo computes codes as an authenticator app would

        return totp.code_at(totp.secret_from_uri(self[f"uri:{user}"]), time.time())


def _keep_uri(user: str):
    def capture(got: Captured, out: str) -> None:
        m = re.search(r"otpauth://\S+", out)
        if m:
            got[f"uri:{user}"] = m.group(0).rstrip('",')

    return capture


def _keep_code(user: str):
    def capture(got: Captured, out: str) -> None:
        got[f"code:{user}"] = json.loads(out)["enrollment_code"]

    return capture


def _keep_pubkey(got: Captured, out: str) -> None:
    got["pubkey"] = out.strip().splitlines()[-1].strip()


def _onboard(user: str, role: str) -> list[Step]:
    return [
        Step(
            f"alice requests an account for {user} ({role}): pending, no code yet",
            ["user", "add", user, "--role", role],
            user="alice",
        ),
        Step(
            "ann, a second admin, approves it: the one-time enrollment code (24 h) goes to her",
            ["user", "approve", user, "--json"],
            user="ann",
            capture=_keep_code(user),
        ),
        _enroll(user),
    ]


def _enroll(user: str) -> Step:
    return Step(
        f"{user} enrolls with the code: sets a password, gets the TOTP secret "
        "(otpauth URI) and 10 recovery codes",
        ["user", "enroll", user, "--code-stdin", "--password-stdin", "--json"],
        # the code on stdin, not argv: on the command line it would stay valid until used
        stdin=lambda got: got[f"code:{user}"] + "\n" + PASSWORDS[user] + "\n",
        capture=_keep_uri(user),
    )


def _login(user: str) -> Step:
    return Step(
        f"{user} logs in: password + TOTP code (the factor becomes active)",
        lambda got: ["login", user, "--password-stdin", "--totp", got.totp(user)],
        stdin=PASSWORDS[user] + "\n",
        user=user,
    )


def story(work: Path) -> list[Step]:
    key = str(work / "vault.key")
    firewall = work / "firewall.json"
    firewall.write_text(
        '{"system": "FortiGate 60F", "host": "10.20.0.1", "port": 443,'
        ' "protocol": "https", "username": "admin", "password": "Tr0ub4dor&3"}'
    )
    return [
        Step(
            "Create a vault with a key-file unseal slot and enroll the first admin, alice "
            "(recovery key, TOTP QR code and recovery codes are shown once)",
            ["init", "--no-passphrase", "--key-file", key, "--admin", "alice", "--password-stdin"],
            stdin=PASSWORDS["alice"] + "\n",
            capture=_keep_uri("alice"),
        ),
        _login("alice"),
        Step(
            "Bootstrap: with fewer than two enrolled admins, alice adds a second admin, ann, and "
            "gets her code at once (audited as a bootstrap step, listed by doctor and audit report)",
            ["user", "add", "ann", "--role", "admin", "--json"],
            user="alice",
            capture=_keep_code("ann"),
        ),
        _enroll("ann"),
        _login("ann"),
        *_onboard("amy", "account_manager"),
        Step(
            "alice cannot approve a request she made herself (two-person rule): exit 4, audited",
            ["user", "add", "mallory", "--role", "engineer"],
            user="alice",
        ),
        Step("", ["user", "approve", "mallory"], user="alice", expect=4),
        *_onboard("mark", "account_manager"),
        *_onboard("bob", "engineer"),
        *_onboard("carl", "engineer"),
        *_onboard("rita", "security_reviewer"),
        _login("amy"),
        _login("mark"),
        _login("bob"),
        _login("carl"),
        _login("rita"),
        Step(
            "amy (account manager) adds a client with its SLA end",
            ["client", "add", "acme", "--sla-end", "+365d"],
            user="amy",
        ),
        Step(
            "amy assigns bob to the client for 90 days (need-to-know)",
            ["client", "assign", "acme", "bob", "--until", "+90d"],
            user="amy",
        ),
        Step(
            "alice requested bob's account and ann approved it, so neither may vouch for him "
            "(record his training, assign him): exit 4",
            ["user", "train", "bob", "--until", "+365d"],
            user="alice",
            expect=4,
        ),
        Step(
            "amy, the account manager, records bob's and carl's data-handling training",
            ["user", "train", "bob", "--until", "+365d"],
            user="amy",
        ),
        Step("", ["user", "train", "carl", "--until", "+365d"], user="amy"),
        Step(
            "bob stores the firewall's admin access (all fields from a JSON file)",
            ["secret", "put", "acme", "office/firewall", "--type", "access", "--fields-json", str(firewall)],
            user="bob",
        ),
        Step(
            "bob stores the Wi-Fi settings; the key comes from stdin, never argv",
            [
                "secret",
                "put",
                "acme",
                "office/wifi",
                "--type",
                "network",
                "--ssid",
                "ACME-Staff",
                "--address",
                "10.20.0.0/24",
                "--gateway",
                "10.20.0.1",
                "--from-stdin",
            ],
            stdin="correct horse battery staple\n",
            user="bob",
        ),
        Step(
            "Update the firewall password: a new version",
            [
                "secret",
                "put",
                "acme",
                "office/firewall",
                "--type",
                "access",
                "--fields-json",
                str(firewall),
                "--host",
                "10.20.0.254",
            ],
            user="bob",
        ),
        Step("List the client's records (paths and kinds only)", ["secret", "list", "acme"], user="bob"),
        Step(
            "bob reads the firewall record (his login TOTP counts as a fresh step-up)",
            ["secret", "get", "acme", "office/firewall"],
            user="bob",
        ),
        Step(
            "Read only the password, for a script",
            ["secret", "get", "acme", "office/firewall", "--field", "password"],
            user="bob",
        ),
        Step("Version history", ["secret", "history", "acme", "office/firewall"], user="bob"),
        Step(
            "carl is trained but not assigned to acme: refused (exit 4) and audited",
            ["secret", "get", "acme", "office/firewall"],
            user="carl",
            expect=4,
        ),
        Step(
            "An admin cannot read secrets either (admin never implies reading): exit 4",
            ["secret", "get", "acme", "office/firewall"],
            user="alice",
            expect=4,
        ),
        Step("Who can reach acme's secrets right now, and why", ["client", "access", "acme"], user="alice"),
        Step(
            "amy rotates the client key: every record key re-wrapped, the old key destroyed",
            ["client", "rotate-key", "acme"],
            user="amy",
        ),
        Step(
            "Bad input is one line and exit 2, nothing changes",
            [
                "secret",
                "put",
                "acme",
                "office/bad",
                "--type",
                "network",
                "--address",
                "10.0.0.300",
                "--from-stdin",
            ],
            stdin="password123\n",
            expect=2,
            user="bob",
        ),
        Step("Unknown record: exit 5", ["secret", "get", "acme", "office/nothing"], expect=5, user="bob"),
        Step(
            "A wrong TOTP code: one line, exit 3, counted towards the lockout",
            ["login", "carl", "--password-stdin", "--totp", "000000"],
            stdin=PASSWORDS["carl"] + "\n",
            expect=3,
            user="carl-retry",
        ),
        # --- SLA end and crypto-shredding --------------------------------------------------
        Step(
            "No grace period below the vault's minimum (30 days): one person cannot shred at once",
            ["client", "add", "globex", "--sla-end", "+30d", "--grace-days", "0"],
            user="amy",
            expect=2,
        ),
        Step(
            "amy adds a second client, globex",
            ["client", "add", "globex", "--sla-end", "+30d"],
            user="amy",
        ),
        Step("", ["client", "assign", "globex", "bob"], user="amy"),
        Step(
            "bob stores globex's VPN access",
            [
                "secret",
                "put",
                "globex",
                "vpn/gateway",
                "--type",
                "access",
                "--host",
                "vpn.globex.example",
                "--username",
                "msp-admin",
                "--from-stdin",
            ],
            stdin="globex-vpn-password\n",
            user="bob",
        ),
        Step(
            "globex leaves and asks for its data to be destroyed now: amy requests an early shred",
            ["sla", "request-shred", "globex", "--reason", "client asked for deletion"],
            user="amy",
        ),
        Step(
            "amy cannot approve her own request (exit 4)",
            ["sla", "approve-shred", "globex"],
            user="amy",
            expect=4,
        ),
        Step(
            "mark, a second account manager outside amy's lineage, approves: the SLA ends now",
            ["sla", "approve-shred", "globex"],
            user="mark",
        ),
        Step(
            "Access is refused the moment the SLA ends (exit 7), before any sweep",
            ["secret", "get", "globex", "vpn/gateway"],
            user="bob",
            expect=7,
        ),
        Step(
            "The scheduled sweep (cron or systemd timer, no login: the vault acts on its own) "
            "crypto-shreds every client past its grace period",
            ["sla", "sweep"],
        ),
        Step(
            "globex is shredded: its keys are gone, so every copy anywhere is unreadable",
            ["secret", "get", "globex", "vpn/gateway"],
            user="bob",
            expect=7,
        ),
        Step(
            "The signed shred certificate",
            ["sla", "certificate", "globex", "--out", str(work / "globex-certificate.json")],
            user="amy",
        ),
        Step(
            "The reviewer's copy of the audit public key",
            ["audit", "pubkey"],
            user="rita",
            capture=_keep_pubkey,
        ),
        Step(
            "Anyone can verify the certificate offline with the public key",
            lambda got: [
                "sla",
                "certificate",
                "--verify",
                str(work / "globex-certificate.json"),
                "--pubkey",
                got["pubkey"],
            ],
        ),
        Step(
            "acme is untouched", ["secret", "get", "acme", "office/wifi", "--field", "wifi_ssid"], user="bob"
        ),
        # --- the security reviewer -----------------------------------------------------------
        Step(
            "rita reviews the access log: every read, refusal, login and shred",
            ["audit", "log", "--limit", "12"],
            user="rita",
        ),
        Step("rita verifies the hash chain and the signed checkpoints", ["audit", "verify"], user="rita"),
        Step(
            "rita exports the log for the SIEM and verifies the export offline",
            ["audit", "export", "--format", "jsonl", "--out", str(work / "audit.jsonl")],
            user="rita",
        ),
        Step(
            "",
            lambda got: ["audit", "verify", "--file", str(work / "audit.jsonl"), "--pubkey", got["pubkey"]],
        ),
        Step(
            "rita's report: access per user and client, refusals, identity alarms, shreds",
            ["audit", "report"],
            user="rita",
        ),
        Step(
            "Check the whole vault: permissions, schema, every blob's authentication tag",
            ["doctor"],
            user="alice",
        ),
    ]


@host_only
@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary vault folder and print its path.")
def demo_cmd(keep):
    """Walk through cvault on a throwaway vault in a temporary folder."""
    work = Path(os.path.abspath(tempfile.mkdtemp(prefix="cvault-demo-")))  # the steps run in "/"
    env = dict(os.environ, CVAULT_HOME=str(work / "vault"), CVAULT_KEY_FILE=str(work / "vault.key"))
    env.pop("CVAULT_ADDR", None)
    env.pop("CVAULT_PASSPHRASE_FILE", None)
    sessions = work / "sessions"
    sessions.mkdir(mode=0o700)
    got = Captured()
    failed = None
    try:
        steps = story(work)
        # a step without a title continues the one before it: the counter counts titled steps
        total = sum(1 for s in steps if s.title)
        shown = 0
        for number, step in enumerate(steps, 1):
            args = step.args(got) if callable(step.args) else step.args
            who = f"({step.user}) " if step.user else ""
            if step.title:
                shown += 1
                click.secho(f"\n[{shown}/{total}] {step.title}", bold=True)
            click.echo(f"{who}$ cvault " + " ".join(args) + ("   (input on stdin)" if step.stdin else ""))
            step_env = dict(env, CVAULT_SESSION_FILE=str(sessions / f"{step.user or 'nobody'}.json"))
            proc = subprocess.run(
                python_argv(module="cli.main", args=args),
                env=step_env,
                cwd=CHILD_CWD,
                input=(step.stdin(got) if callable(step.stdin) else step.stdin) or "",
                capture_output=True,
                text=True,
            )
            if step.capture and proc.returncode == 0:
                step.capture(got, proc.stdout)
            for line in (proc.stdout + proc.stderr).rstrip().splitlines():
                click.echo(f"    {line}")
            if proc.returncode != step.expect:
                failed = f"step {number} exited {proc.returncode}, expected {step.expect}"
                break
            if step.expect:
                click.echo(f"    (exit {proc.returncode}, as expected)")
    finally:
        if keep:
            click.echo(f"\nvault kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        click.echo(f"cvault: demo failed: {failed}", err=True)
        sys.exit(1)
    click.secho("\ndemo complete: every step behaved as expected", bold=True)
