"""``cvault demo``: a throwaway vault in a temporary folder, walking through the whole story.

Each step runs the real ``cvault`` command in a subprocess, exactly as a user would type it, and
prints the command and its output. The demo fails (exit 1) if any step's exit code is not the one
the story expects, so it doubles as an end-to-end smoke test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click


@dataclass
class Step:
    title: str
    args: list[str]
    stdin: str | None = None
    expect: int = 0


def story(work: Path) -> list[Step]:
    key = str(work / "vault.key")
    firewall = work / "firewall.json"
    firewall.write_text('{"system": "FortiGate 60F", "host": "10.20.0.1", "port": 443,'
                        ' "protocol": "https", "username": "admin", "password": "Tr0ub4dor&3"}')
    return [
        Step("Create a vault with a key-file unseal slot (the recovery key is shown once)",
             ["init", "--no-passphrase", "--key-file", key]),
        Step("Add a client with its SLA end", ["client", "add", "acme", "--sla-end", "+365d"]),
        Step("Store the firewall's admin access (all fields from a JSON file)",
             ["secret", "put", "acme", "office/firewall", "--type", "access",
              "--fields-json", str(firewall)]),
        Step("Store the Wi-Fi settings; the key comes from stdin, never argv",
             ["secret", "put", "acme", "office/wifi", "--type", "network", "--ssid", "ACME-Staff",
              "--address", "10.20.0.0/24", "--gateway", "10.20.0.1", "--from-stdin"],
             stdin="correct horse battery staple\n"),
        Step("Update the firewall password: a new version", ["secret", "put", "acme",
             "office/firewall", "--type", "access", "--fields-json", str(firewall), "--host",
             "10.20.0.254"]),
        Step("List the client's records (paths and kinds only)", ["secret", "list", "acme"]),
        Step("Read the firewall record", ["secret", "get", "acme", "office/firewall"]),
        Step("Read only the password, for a script", ["secret", "get", "acme", "office/firewall",
                                                      "--field", "password"]),
        Step("Version history", ["secret", "history", "acme", "office/firewall"]),
        Step("Rotate the client key: every record key re-wrapped, the old key destroyed",
             ["client", "rotate-key", "acme"]),
        Step("Bad input is one line and exit 2, nothing changes",
             ["secret", "put", "acme", "office/bad", "--type", "network", "--address", "10.0.0.300",
              "--from-stdin"], stdin="password123\n", expect=2),
        Step("Unknown record: exit 5", ["secret", "get", "acme", "office/nothing"], expect=5),
        Step("Check the whole vault: permissions, schema, every blob's authentication tag",
             ["doctor"]),
    ]


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary vault folder and print its path.")
def demo_cmd(keep):
    """Walk through cvault on a throwaway vault in a temporary folder."""
    work = Path(tempfile.mkdtemp(prefix="cvault-demo-"))
    env = dict(os.environ, CVAULT_HOME=str(work / "vault"), CVAULT_KEY_FILE=str(work / "vault.key"))
    env.pop("CVAULT_ADDR", None)
    env.pop("CVAULT_PASSPHRASE_FILE", None)
    failed = None
    try:
        steps = story(work)
        for number, step in enumerate(steps, 1):
            click.secho(f"\n[{number}/{len(steps)}] {step.title}", bold=True)
            click.echo("$ cvault " + " ".join(step.args)
                       + ("   (input on stdin)" if step.stdin else ""))
            proc = subprocess.run([sys.executable, "-m", "cli.main", *step.args], env=env,
                                  input=step.stdin or "", capture_output=True, text=True)
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
