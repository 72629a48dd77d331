"""``cvault agent start | stop | status | lock``: the per-user resident agent (docs/agent.md).

Like ssh-agent and gpg-agent: ``start`` runs ``cli.agent_daemon`` in a new session, which holds
the unsealed vault (or a kept-alive connection to ``--addr``) and answers this user's
``secret get|list|search`` on a Unix socket; the unseal material goes to it over that socket,
never argv. ``start`` on a locked agent unlocks it. ``lock`` makes it forget the root key.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click

from cli import agent_protocol
from cli.output import emit, json_option
from cli.state import read_secret_file
from vault.errors import InvalidInput, VaultError, VaultSealed


class AgentError(VaultError):
    """the agent failed to start or answer."""

    exit_code = 1
    code = "agent_error"


@click.group("agent")
def agent() -> None:
    """A resident agent that serves secret get/list/search without a process start-up each time."""


def _status() -> dict:
    try:
        code, out, _err, _ = agent_protocol.call("status", [], timeout=5)
    except agent_protocol.AgentUnavailable as exc:
        return {"running": False, "socket": agent_protocol.socket_path(), "reason": str(exc)}
    fields = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    return {
        "running": code == 0,
        "socket": agent_protocol.socket_path(),
        "state": fields.get("state"),
        "mode": fields.get("mode"),
        "pid": int(fields["pid"]) if fields.get("pid", "").isdigit() else None,
        "idle_lock_in_seconds": int(fields.get("idle_lock_in", "0") or 0),
        "served": int(fields.get("served", "0") or 0),
    }


def _unseal_material(state) -> tuple[str, str]:
    """What the agent unseals with: the same order as every other command (CliState.vault)."""
    if state.addr:
        return "service", ""
    key_file = os.environ.get("CVAULT_KEY_FILE")
    pass_file = os.environ.get("CVAULT_PASSPHRASE_FILE")
    if key_file:
        return "key-file", os.path.abspath(os.path.expanduser(key_file))
    if pass_file:
        return "passphrase", read_secret_file(pass_file, "passphrase")
    if sys.stdin.isatty():
        return "passphrase", click.prompt("Vault passphrase", hide_input=True, err=True)
    raise VaultSealed(
        "vault sealed: set CVAULT_KEY_FILE or CVAULT_PASSPHRASE_FILE, "
        "or run in a terminal to type the passphrase"
    )


def _unlock(kind: str, secret: str) -> None:
    code, _out, err, _ = agent_protocol.call("unlock", [kind, secret], timeout=120)
    if code != 0:
        message = err.decode(errors="replace").strip().removeprefix("cvault: ")
        error = AgentError(message or "the agent could not unlock")
        error.exit_code = code
        raise error


@agent.command("start")
@click.option(
    "--idle",
    default="15m",
    show_default=True,
    metavar="DURATION",
    help="Lock (forget the root key) after this long without a request, e.g. 15m, 1h.",
)
@click.option("--exit-with-session", is_flag=True, help="Stop when the login session that started it ends.")
@json_option
@click.pass_obj
def start_cmd(state, idle, exit_with_session, as_json):
    """Start this user's agent for the vault (or service) of this command line, or unlock it."""
    from vault.dates import parse_duration

    idle_seconds = parse_duration(idle).total_seconds()
    if idle_seconds <= 0:
        raise InvalidInput("--idle must be longer than 0 seconds")
    current = _status()
    if not state.addr:
        state.vault(unseal=False)  # the vault exists and its files are private: one line if not
    kind, secret = _unseal_material(state)
    started = False
    if not current["running"]:
        leader = str(os.getsid(0)) if exit_with_session else ""
        cacert = os.environ.get("CVAULT_CACERT", "") if state.addr else ""
        # the daemon starts in "/": every path absolute
        setup = "\n".join(
            [
                os.path.abspath(agent_protocol.socket_path()),
                "" if state.addr else os.path.abspath(state.home_dir),
                state.addr or "",
                os.path.abspath(cacert) if cacert else "",
                str(idle_seconds),
                leader,
            ]
        )
        from vault.hardening import CHILD_CWD, python_argv

        # isolated, in "/" (review6 R6-4): never a module of the folder the command was typed in
        proc = subprocess.Popen(
            python_argv(module="cli.agent_daemon"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            text=True,
            cwd=CHILD_CWD,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(setup)
        proc.stdin.close()
        line = proc.stdout.readline().strip()
        proc.stdout.close()
        if line != "ready":
            proc.wait(timeout=10)
            raise AgentError(f"agent did not start: {line.removeprefix('error ') or 'no answer'}")
        started = True
    elif current.get("state") == "unlocked":
        emit(
            {**current, "started": False},
            as_json,
            lambda d: click.echo(f"agent already running ({d['mode']})"),
        )
        return
    try:
        _unlock(kind, secret)
    except VaultError:
        if started:
            agent_protocol.call("stop", [], timeout=5)
        raise
    result = {**_status(), "started": started}
    emit(
        result,
        as_json,
        lambda d: click.echo(
            f"agent {'started' if started else 'unlocked'} ({d['mode']}), pid {d['pid']}; "
            f"locks after {d['idle_lock_in_seconds']} s idle; socket {d['socket']}"
        ),
    )


@agent.command("status")
@json_option
def status_cmd(as_json):
    """Whether an agent runs for this user, what it holds and whether it is locked (exit 1 if none)."""
    data = _status()
    emit(
        data,
        as_json,
        lambda d: click.echo(
            f"agent {d['state']} ({d['mode']}), pid {d['pid']}, socket {d['socket']}"
            if d["running"]
            else f"no agent ({d['reason']})"
        ),
    )
    if not data["running"]:
        raise SystemExit(1)


def _simple(op: str, done: str, as_json: bool) -> None:
    try:
        code, out, err, _ = agent_protocol.call(op, [], timeout=10)
    except agent_protocol.AgentUnavailable as exc:
        raise AgentError(f"no agent to {op}: {exc}") from None
    emit({"ok": code == 0, "result": done}, as_json, lambda d: click.echo(out.decode().strip()))
    if code != 0:
        raise SystemExit(code)


@agent.command("lock")
@json_option
def lock_cmd(as_json):
    """Make the agent forget the root key now (cvault agent start unlocks it again)."""
    _simple("lock", "locked", as_json)


@agent.command("stop")
@json_option
def stop_cmd(as_json):
    """Stop the agent (it forgets the root key first)."""
    _simple("stop", "stopped", as_json)
