"""The CLI story, four times: embedded, against a real ``cvault serve`` on loopback HTTPS, and
through a resident ``cvault agent`` (the console script's import-light path: ``cli.launcher``) in
each of the two (the agent holding the vault, and the agent holding a connection to the service).

One parametrized fixture yields a runner with the interface of ``VaultDir.cli``; the same story
runs through it in both modes, checking exit codes and output at each step, and the served run's
and agent runs' transcripts (exit code and stdout of every step, timestamps, ids and keys
normalised) must equal the embedded one; through an agent, every step's standard error must also
equal the one of the same mode without it. In served mode the CLI gets no ``CVAULT_HOME`` and no
key file: only ``CVAULT_ADDR`` and ``CVAULT_CACERT`` (the test CA), so every call really goes over
HTTPS.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.factories import edit_rows
from tests.helpers import ROOT, VaultDir, copy_vault, make_vault, run_cli
from tests.server.harness import Service, start_service

PASSWORD = "correct horse battery"
_TRANSCRIPTS: dict[str, list] = {}
_ERRORS: dict[str, list[str]] = {}


class Totp:
    """Codes for one user, each for a later time step than the last (the replay rule)."""

    def __init__(self, otpauth_uri: str):
        from urllib.parse import parse_qs, urlsplit

        self.secret = parse_qs(urlsplit(otpauth_uri).query)["secret"][0]
        self.last = 0

    def code(self) -> str:
        from vault.identity.totp import code_at

        now_step = int(time.time()) // 30
        step = max(self.last + 1, now_step)
        while step > int(time.time()) // 30 + 1:
            time.sleep(0.5)
        self.last = step
        return code_at(self.secret, step * 30)


@dataclass
class Runner:
    """``cli(*args, input=, env=, timeout=)`` like VaultDir.cli, in one of the two modes."""

    mode: str
    vdir: VaultDir
    folder: Path
    service: Service | None = None
    agent_socket: Path | None = None
    user: str | None = None
    totp: dict[str, Totp] = field(default_factory=dict)
    #: each step's normalised stderr (through the agent it must equal the run without it)
    errors: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict:
        session = str(self.folder / f"session-{self.user or 'nobody'}.json")
        if self.agent_socket is not None:
            extra = {"CVAULT_AGENT_SOCK": str(self.agent_socket), **extra}
        if self.service is None:
            return self.vdir.env(CVAULT_SESSION_FILE=session, **extra)
        env = self.vdir.env(
            CVAULT_ADDR=self.service.addr,
            CVAULT_CACERT=str(self.service.ca.ca_path),
            CVAULT_SESSION_FILE=session,
            **extra,
        )
        del env["CVAULT_HOME"], env["CVAULT_KEY_FILE"]  # nothing local: all over HTTPS
        return env

    def cli(self, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 60):
        entry = "cli.launcher" if self.agent_socket is not None else "cli.main"
        return run_cli(*args, input=input, env=env or self.env(), timeout=timeout, module=entry)

    def as_user(self, user: str | None) -> Runner:
        self.user = user
        return self

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.vdir.home / "vault.db", timeout=30, isolation_level=None)


def make_runner(mode: str, template: VaultDir, folder: Path) -> Runner:
    folder.mkdir(parents=True, exist_ok=True)
    vdir = copy_vault(template, folder)
    runner = Runner(mode, vdir, folder)
    v = vdir.open()
    try:
        enrolled = v.users.bootstrap_admin("ada", PASSWORD)
    finally:
        v.close()
    runner.totp["ada"] = Totp(enrolled["otpauth_uri"])
    if mode in ("served", "served-agent"):
        # background jobs off: the story compares outputs (checkpoint counts); tests/test_service.py
        # covers the jobs
        runner.service = start_service(
            vdir,
            folder / "service",
            "--sweep-interval",
            "0",
            "--checkpoint-interval",
            "0",
            "--outbox-interval",
            "0",
        )
    if mode in ("agent", "served-agent"):
        (folder / "run").mkdir(mode=0o700)
        runner.agent_socket = folder / "run" / "agent.sock"
        started = runner.cli("agent", "start")
        assert started.returncode == 0, started.stderr
    return runner


@pytest.fixture(scope="module")
def story_template(tmp_path_factory) -> VaultDir:
    """A vault with no users at all: the story's admin is its first one."""
    return make_vault(tmp_path_factory.mktemp("story"), with_operator=False)


@pytest.fixture(params=["embedded", "served", "agent", "served-agent"])
def runner(request, story_template, tmp_path):
    r = make_runner(request.param, story_template, tmp_path / request.param)
    yield r
    if r.service is not None:
        r.service.stop()
    if r.agent_socket is not None:
        r.cli("agent", "stop")


# --- the story ------------------------------------------------------------------------------------

_NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"ed25519:[A-Za-z0-9+/=]+"), "<pubkey>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{16,31}\b"), "<hex>"),
    (re.compile(r"session-\w+\.json"), "<session file>"),
    (re.compile(r"(?<=/)[^\s\"]*?/(embedded|served-agent|served|agent)/"), "<tmp>/"),
]


def normalise(text: str) -> str:
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text


def run_story(r: Runner) -> list[tuple[str, str, int, str]]:
    """The whole story; returns the transcript (user, command, exit code, normalised stdout)."""
    transcript: list[tuple[str, str, int, str]] = []

    def step(
        user: str | None,
        *args: str,
        code: int = 0,
        input: str | None = None,
        compare: bool = True,
        has: str | None = None,
    ):
        proc = r.as_user(user).cli(*args, input=input)
        where = f"[{r.mode}] {user}: cvault {' '.join(args)}"
        assert proc.returncode == code, f"{where}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        if code:
            assert proc.stderr.startswith("cvault: ") and proc.stderr.count("\n") == 1, (
                f"{where}: not one error line: {proc.stderr!r}"
            )
        if has is not None:
            assert has in proc.stdout + proc.stderr, f"{where}: {has!r} not in {proc.stdout!r}"
        command = re.sub(r"(--totp|--code) \S+", r"\1 <code>", " ".join(args))
        transcript.append(
            (user or "-", command, proc.returncode, normalise(proc.stdout) if compare else "<not compared>")
        )
        r.errors.append(normalise(proc.stderr) if compare else "<not compared>")
        return proc

    def login(user: str):
        return step(
            user,
            "login",
            user,
            "--password-stdin",
            "--totp",
            r.totp[user].code(),
            input=PASSWORD + "\n",
            has=f"logged in as {user}",
        )

    # --- admin logs in and onboards staff (user add + enroll) ---------------------------------
    step(None, "client", "list", code=3)  # not logged in
    login("ada")
    step("ada", "whoami", has="admin")

    def enroll(name: str, code: str):
        enrolled = json.loads(
            step(
                name,
                "--json",
                "user",
                "enroll",
                name,
                "--code-stdin",
                "--password-stdin",
                input=code + "\n" + PASSWORD + "\n",
                compare=False,
            ).stdout
        )
        r.totp[name] = Totp(enrolled["otpauth_uri"])
        login(name)

    # the second admin: a bootstrap step (fewer than two enrolled admins), the code at once
    second = json.loads(step("ada", "--json", "user", "add", "alan", "--role", "admin", compare=False).stdout)
    assert second["mode"] == "bootstrap"
    enroll("alan", second["enrollment_code"])
    # from now on every account is requested by one admin and approved by another
    for name, role in (("maria", "account_manager"), ("eve", "engineer"), ("rita", "security_reviewer")):
        step("ada", "user", "add", name, "--role", role, has="pending approval")
        step("ada", "user", "approve", name, code=4)  # the requester cannot approve
        approved = json.loads(step("alan", "--json", "user", "approve", name, compare=False).stdout)
        enroll(name, approved["enrollment_code"])
    # ada requested eve's account and alan approved it: neither may vouch for it (training)
    step("ada", "user", "train", "eve", "--until", "+365d", code=4)
    step("maria", "user", "train", "eve", "--until", "+365d", has="training of eve valid until")
    step("ada", "user", "list")
    # --- clients -----------------------------------------------------------------------------------
    step("maria", "client", "add", "acme", "--sla-end", "+365d", has="client acme created")
    step("maria", "client", "add", "globex", "--sla-end", "2099-01-01")
    step("maria", "client", "add", "acme", "--sla-end", "+365d", code=2)  # exists already
    step("maria", "client", "assign", "acme", "eve", has="eve assigned to acme")
    step("maria", "client", "list", has="globex")
    step("eve", "client", "list", has="acme")
    step("eve", "client", "show", "acme", has="acme")
    step("eve", "client", "show", "globex", code=4)  # not assigned
    # --- secrets ------------------------------------------------------------------------------------
    step(
        "eve",
        "secret",
        "put",
        "acme",
        "office/firewall",
        "--type",
        "access",
        "--from-stdin",
        "--host",
        "fw1.acme.example",
        "--username",
        "admin",
        input="s3cret-one\n",
        has="stored acme/office/firewall version 1",
    )
    step(
        "eve",
        "secret",
        "put",
        "acme",
        "office/firewall",
        "--type",
        "access",
        "--from-stdin",
        "--host",
        "fw1.acme.example",
        "--username",
        "admin",
        input="s3cret-two\n",
        has="version 2",
    )
    step(
        "eve",
        "secret",
        "put",
        "acme",
        "wifi/guest",
        "--type",
        "note",
        "--from-stdin",
        input="guest wifi: ask reception\n",
    )
    step("eve", "secret", "get", "acme", "office/firewall", has="s3cret-two")
    step(
        "eve",
        "secret",
        "get",
        "acme",
        "office/firewall",
        "--version",
        "1",
        "--field",
        "password",
        has="s3cret-one",
    )
    step("eve", "--json", "secret", "get", "acme", "office/firewall")
    step("eve", "secret", "list", "acme", has="wifi/guest")
    step("eve", "secret", "history", "acme", "office/firewall", has="current")
    # no silent field loss, edit, restore, search across clients (issue 16)
    step(
        "eve",
        "secret",
        "put",
        "acme",
        "office/firewall",
        "--type",
        "access",
        "--port",
        "8443",
        "--from-stdin",
        input="s3cret-three\n",
        code=2,
    )  # would drop host and username
    step(
        "eve", "secret", "edit", "acme", "office/firewall", "--port", "8443", "--tag", "vpn", has="version 3"
    )
    step("eve", "secret", "restore", "acme", "office/firewall", "--version", "2", has="as version 4")
    step("eve", "secret", "edit", "acme", "office/firewall", "--tag", "vpn", has="version 5")
    step("eve", "--json", "secret", "search", "VPN", has="office/firewall")
    step("eve", "secret", "list", "--all", has="wifi/guest")
    # step-up: the last TOTP is older than the window -> refused without a code, then given one
    v = r.vdir.open()
    try:
        edit_rows(
            v,
            "sessions",
            "stepup_at = stepup_at - 3600",
            (),
            "user_id = (SELECT id FROM users WHERE name = 'eve')",
        )
    finally:
        v.close()
    step("eve", "secret", "get", "acme", "office/firewall", code=3)
    step(
        "eve",
        "secret",
        "get",
        "acme",
        "office/firewall",
        "--field",
        "password",
        "--totp",
        r.totp["eve"].code(),
        has="s3cret-two",
    )
    # refusals
    step("eve", "secret", "get", "globex", "office/firewall", code=4)  # not assigned
    step("maria", "secret", "get", "acme", "office/firewall", code=4)  # no engineer role
    step("eve", "secret", "get", "acme", "no/such", code=5)
    step("eve", "secret", "get", "nosuchclient", "a/b", code=5)
    step("eve", "secret", "put", "acme", "bad\x01path", "--type", "note", "--from-stdin", input="x\n", code=2)
    step("eve", "secret", "rm", "acme", "wifi/guest", has="deleted acme/wifi/guest")
    step("eve", "secret", "get", "acme", "wifi/guest", code=5)
    step("eve", "secret", "history", "acme", "wifi/guest", has="deleted")
    # --- SLA: expired client -> exit 7 --------------------------------------------------------------
    step("maria", "sla", "show", "acme", has="active")
    step("maria", "sla", "expire", "acme", "--reason", "contract ended", has="SLA ended")
    step("eve", "secret", "get", "acme", "office/firewall", code=7)
    step("eve", "secret", "list", "acme", code=7)
    step("maria", "sla", "renew", "acme", "--until", "+30d", has="renewed")
    step("eve", "secret", "list", "acme", has="office/firewall")
    # --- audit ----------------------------------------------------------------------------------------
    step("rita", "audit", "log", "--client", "acme", "--outcome", "deny", has="secret.get")
    step("rita", "audit", "verify", has="audit verify: ok")
    step("eve", "audit", "log", code=4)
    # --- the session ends ------------------------------------------------------------------------------
    step("eve", "logout", has="logged out eve")
    step("eve", "secret", "list", "acme", code=3)
    return transcript


def _run_of(mode: str, story_template: VaultDir, tmp_path: Path) -> tuple[list, list[str]]:
    """The transcript and standard errors of ``mode``'s run: this worker's, or one made here
    (under pytest -n that run may have happened in another worker)."""
    if mode not in _TRANSCRIPTS:
        other = make_runner(mode, story_template, tmp_path / mode)
        try:
            _TRANSCRIPTS[mode] = run_story(other)
        finally:
            if other.service is not None:
                other.service.stop()
        _ERRORS[mode] = other.errors
    return _TRANSCRIPTS[mode], _ERRORS[mode]


@pytest.mark.slow
def test_cli_story(runner, story_template, tmp_path):
    transcript = run_story(runner)
    _TRANSCRIPTS[runner.mode], _ERRORS[runner.mode] = transcript, runner.errors
    if runner.mode == "agent":  # the agent really answered the story's reads
        served = runner.db().execute("SELECT count(*) FROM audit_events WHERE origin = 'agent'").fetchone()[0]
        assert served > 0
    if runner.mode == "served-agent":  # (the service records the API origin: ask the agent)
        assert json.loads(runner.cli("agent", "status", "--json").stdout)["served"] > 0
    if runner.mode in ("agent", "served-agent"):
        # through the agent, the standard error of every step is also the one without it
        plain = "embedded" if runner.mode == "agent" else "served"
        errors = _run_of(plain, story_template, tmp_path)[1]
        assert len(errors) == len(runner.errors)
        for step_no, (want, got) in enumerate(zip(errors, runner.errors, strict=True)):
            assert want == got, f"step {step_no}: {plain} and {runner.mode} stderr differ:\n{want!r}\n{got!r}"
    if runner.mode == "embedded":
        return
    embedded = _run_of("embedded", story_template, tmp_path)[0]
    assert len(embedded) == len(transcript)
    for e, s in zip(embedded, transcript, strict=True):
        assert e == s, f"embedded and {runner.mode} differ:\n{e}\n{s}"


def test_local_only_commands_refuse_in_service_mode(tmp_path):
    env = {"CVAULT_ADDR": "https://127.0.0.1:9", "PYTHONPATH": str(ROOT)}
    for args in (["init"], ["slot", "list"], ["doctor"], ["demo"], ["serve"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "service mode" in proc.stderr
