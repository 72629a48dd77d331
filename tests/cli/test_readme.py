"""README.md, run as written (issue 17): every ``sh`` block, in order, typed line by line into a
real interactive bash on a pseudo-terminal with a fresh HOME (so a fresh vault in the default
place), answering every prompt as the person at the keyboard would (passwords, enrollment codes
copied from the admin's output, TOTP codes computed from the otpauth URI the enrollment printed,
as an authenticator app does). Each command must meet the outcome the README states for it
(``WALKTHROUGH`` below, in the README's order): a README edit that breaks the walkthrough, or adds
a step nobody checked, fails here.

The first two blocks install cvault and run its tests: the test runs the demo they end with, and
checks that the install line names extras that exist and that ``.ci/run`` (which is the CI, on a
fresh machine) runs the README's test command verbatim; it does not re-install the package or run
the suite from inside the suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.factories import unused_code
from tests.helpers import ROOT
from tests.importers.builders import bitwarden_login, write_json
from tests.shell import Ran, Shell

pytestmark = pytest.mark.slow

README = ROOT / "README.md"


def sh_blocks(text: str) -> list[list[str]]:
    """The commands of every ```sh block: one per line (a trailing backslash joins lines);
    blank lines and lines holding only a comment are not commands."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    out = []
    for block in blocks:
        commands: list[str] = []
        pending = ""
        for line in block.splitlines():
            if pending:
                line = pending + line
                pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
        out.append(commands)
    return out


def words(command: str) -> str:
    """The command as typed, without its comment, runs of blanks as one (what steps match)."""
    quote = ""
    for i, ch in enumerate(command):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1].isspace()):
            command = command[:i]
            break
    return " ".join(command.split())


# --- the outcome the README states for each step ---------------------------------------------------


@dataclass
class Step:
    #: the command as the README has it, comment and extra blanks left out (see :func:`words`)
    pattern: str
    rc: int = 0
    #: texts the terminal must show (regular expressions)
    says: tuple[str, ...] = ()
    #: a check of anything else (the session, the files the step made)
    check: Callable[[Walk, Ran], None] | None = None


@dataclass
class Walk:
    """What the person at the keyboard knows: passwords they chose, codes they were handed,
    the otpauth URIs their authenticator app scanned."""

    home: Path
    passphrase: str = "our vault passphrase, kept in the safe"
    passwords: dict[str, str] = field(default_factory=dict)
    enrollment_codes: dict[str, str] = field(default_factory=dict)
    seeds: dict[str, str] = field(default_factory=dict)
    used_steps: dict[str, set[int]] = field(default_factory=dict)
    firewall_password: str = "Fw-admin-pw 42!"
    wifi_key: str = "acme wifi key 7"
    last: str = ""  # the previous answer (for "Repeat for confirmation")

    def password(self, name: str) -> str:
        return self.passwords.setdefault(name, f"{name}'s own long password")

    def code(self, name: str) -> str:
        return unused_code(self.seeds[name], self.used_steps.setdefault(name, set()))

    def answer(self, prompt: str, command: str) -> str:
        w = shlex.split(command, comments=True)
        args = w[w.index("cvault") + 1 :] if "cvault" in w else w
        subject = next((a for a in args[2:] if not a.startswith("-")), "") if len(args) > 2 else ""
        if prompt == "Repeat for confirmation":
            reply = self.last
        elif prompt == "New vault passphrase":
            reply = self.passphrase
        elif prompt.startswith("New password for "):
            reply = self.password(prompt.removeprefix("New password for "))
        elif prompt == "New password":  # user enroll NAME
            reply = self.password(args[2])
        elif prompt == "Enrollment code":
            reply = self.enrollment_codes[args[2]]
        elif prompt == "Password" and args[0] == "login":
            reply = self.password(args[1])
        elif prompt == "TOTP code" and args[0] == "login":
            reply = self.code(args[1])
        elif prompt == "password" and args[:2] == ["secret", "put"]:
            reply = self.firewall_password
        elif prompt == "Wi-Fi key":
            reply = self.wifi_key
        else:
            raise AssertionError(f"unexpected prompt {prompt!r} for {command!r} ({subject})")
        self.last = reply
        return reply


def _keeps_uri(name: str):
    def check(walk: Walk, ran: Ran) -> None:
        m = re.search(r"otpauth://totp/[^\s]+", ran.output)
        assert m, ran.output
        from vault.identity.totp import secret_from_uri

        walk.seeds[name] = secret_from_uri(m.group(0))

    return check


def _keeps_code(name: str):
    def check(walk: Walk, ran: Ran) -> None:
        m = re.search(r"enrollment code \(one use[^\n]*\n\s+(\S+)", ran.output)
        assert m, ran.output
        walk.enrollment_codes[name] = m.group(1)

    return check


def _fresh(name: str) -> Step:
    return Step(
        f"cvault user enroll {name}",
        says=(rf"Enrolled {name}", "otpauth://totp/"),
        check=_keeps_uri(name),
    )


def _login(name: str, roles: str) -> Step:
    return Step(f"cvault login {name}", says=(rf"logged in as {name} \({roles}\)",))


def _clipboard_cleared(walk: Walk, ran: Ran) -> None:
    import time

    writes = walk.home / "clipboard-writes"
    for _ in range(200):  # the detached clearer (CVAULT_CLIPBOARD_CLEAR_SECONDS=0 here)
        if writes.exists() and len(writes.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert writes.read_text().splitlines() == [walk.firewall_password, ""], "copied, then cleared"
    assert walk.firewall_password not in ran.output


def _restored(walk: Walk, ran: Ran) -> None:
    assert (walk.home / "restore-drill" / "vault.db").is_file()


WALKTHROUGH: list[Step] = [
    Step(
        "cvault init --key-file ~/.config/cvault/vault.key --admin alice",
        says=("Vault created at", r"Recovery key \(shown once", "Recovery codes", "cvault login alice"),
        check=_keeps_uri("alice"),
    ),
    Step("export CVAULT_KEY_FILE=~/.config/cvault/vault.key"),
    _login("alice", "admin"),
    Step(
        "cvault user add ann --role admin",
        says=(r"added \(admin\) \(bootstrap step",),
        check=_keeps_code("ann"),
    ),
    _fresh("ann"),
    *[
        Step(f"cvault user add {n} --role {r}", says=(rf"user {n} requested \({r}\): pending approval",))
        for n, r in (
            ("amy", "account_manager"),
            ("mark", "account_manager"),
            ("bob", "engineer"),
            ("rita", "security_reviewer"),
        )
    ],
    Step(
        "cvault user approve amy", rc=4, says=("access denied: alice requested this and cannot approve it",)
    ),
    _login("ann", "admin"),
    *[
        Step(
            f"cvault user approve {n}",
            says=(rf"account of {n} .* approved; requested by alice",),
            check=_keeps_code(n),
        )
        for n in ("amy", "mark", "bob", "rita")
    ],
    *[_fresh(n) for n in ("amy", "mark", "bob", "rita")],
    _login("amy", "account_manager"),
    Step("cvault user train bob --until +365d", says=("training of bob valid until",)),
    Step("cvault client add acme --sla-end +365d --grace-days 30", says=(r"client acme created \(SLA ends",)),
    Step("cvault client assign acme bob --until +90d", says=("bob assigned to acme until",)),
    _login("bob", "engineer"),
    Step(
        "cvault secret put acme office/firewall --type access --host 10.20.0.1 --username admin",
        says=("stored acme/office/firewall version 1",),
    ),
    Step("read -rsp 'Wi-Fi key: ' WIFI_KEY && echo"),
    Step(
        "printf '%s\\n' \"$WIFI_KEY\" | cvault secret put acme office/wifi --type network --ssid ACME"
        " --from-stdin",
        says=("stored acme/office/wifi version 1",),
    ),
    Step(
        "cvault secret get acme office/firewall",
        says=(r"host +10\.20\.0\.1", r"username +admin", r"password +•+"),
    ),
    Step(
        "cvault secret get acme office/firewall --field password",
        check=lambda walk, ran: (
            None if ran.output.strip() == walk.firewall_password else pytest.fail(ran.output)
        ),
    ),
    Step(
        "cvault secret get acme office/firewall --copy",
        says=("copied password of acme/office/firewall to the clipboard",),
        check=_clipboard_cleared,
    ),
    Step(
        'cvault import --from bitwarden export.json --client-map "Clients/Acme Corp=acme" --dry-run',
        says=("dry run: nothing written", r"acme: 1 new"),
    ),
    Step(
        'cvault import --from bitwarden export.json --client-map "Clients/Acme Corp=acme"',
        says=(r"acme: 1 new", "reminder: export.json holds every secret"),
    ),
    Step(
        "rm export.json", check=lambda walk, ran: None if not (walk.home / "export.json").exists() else 1 / 0
    ),
    _login("amy", "account_manager"),
    Step('cvault sla expire acme --reason "contract ended"', says=("SLA ended at", "shred due")),
    Step("cvault sla sweep", says=("nothing due", r"cvault sla sweep \S+Z: 0 shredded, ok")),
    Step(
        'cvault sla request-shred acme --reason "client asked for erasure"',
        says=("early shred of acme requested; it needs approval",),
    ),
    _login("mark", "account_manager"),
    Step("cvault sla approve-shred acme", says=("early shred of acme approved",)),
    Step("cvault sla sweep", says=("shredded acme", r"cvault sla sweep \S+Z: 1 shredded, ok")),
    Step(
        "cvault sla certificate acme",
        says=("cvault shred certificate", r"client +acme", "requested by +amy", "approved by +mark"),
    ),
    _login("alice", "admin"),
    Step(
        "cvault backup --out ~/cvault-backups/ --keep 7",
        says=(r"cvault-backups/cvault-\S+\.cvbk: \d+ bytes",),
    ),
    Step(
        'cvault --home ~/restore-drill restore "$(ls -t ~/cvault-backups/*.cvbk | head -n 1)"',
        says=("restored backup", "clients restored: 0"),  # acme was shredded before the backup
        check=_restored,
    ),
    Step("cvault custody show", says=(r"kind +local", r"status\.destroyed +1")),
    _login("rita", "security_reviewer"),
    Step("cvault audit log --client acme --since 30d", says=("secret.get", "sla.approve_shred", "sla.shred")),
    Step("cvault audit verify", says=(r"audit verify: ok: \d+ entries",)),
    Step(
        "cvault audit export --format cef --out audit.cef",
        says=(r"exported \d+ entries \(cef\) to audit.cef",),
        check=lambda walk, ran: (
            None if (walk.home / "audit.cef").read_text().startswith("CEF:") else pytest.fail("not CEF")
        ),
    ),
    Step(
        "cvault audit pubkey > audit.pub",
        says=(r"fingerprint SHA256:[0-9a-f]{32}",),
        check=lambda walk, ran: (
            None if (walk.home / "audit.pub").read_text().startswith("ed25519:") else pytest.fail("no key")
        ),
    ),
    Step("cvault audit export --format jsonl --out audit.jsonl", says=(r"exported \d+ entries \(jsonl\)",)),
    Step(
        "cvault audit verify --file audit.jsonl --pubkey audit.pub",
        says=(r"audit verify: ok: \d+ entries",),
    ),
]


# --- the environment: a fresh machine's shell -------------------------------------------------------


def fresh_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """A login's environment on a fresh machine: HOME, PATH (the installed cvault and the system),
    a UTF-8 locale; nothing of the test runner's CVAULT_* or XDG_* settings."""
    cvault = shutil.which("cvault", path=str(Path(sys.executable).parent))
    if cvault is None:
        pytest.fail("the cvault console script is not installed next to python: pip install -e .")
    return {
        "HOME": str(home),
        "PATH": f"{bin_dir}:{Path(cvault).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "COLUMNS": "100",
        "DISPLAY": ":0",  # a desktop session: the clipboard tool is the fake xclip in bin_dir
        "CVAULT_CLIPBOARD_CLEAR_SECONDS": "0",  # may only shorten the 30 s (cli/clipboard.py)
    }


def fake_xclip(bin_dir: Path, home: Path) -> None:
    """xclip on a desktop without one: it keeps the clipboard in a file and logs each write."""
    bin_dir.mkdir()
    clip, writes = home / "clipboard", home / "clipboard-writes"
    tool = bin_dir / "xclip"
    tool.write_text(
        "#!/bin/sh\n"
        f'if [ "$3" = "-o" ]; then cat {clip}; '
        f"else cat > {clip}; cat {clip} >> {writes}; echo >> {writes}; fi\n"
    )
    tool.chmod(0o755)


def bitwarden_export(path: Path) -> None:
    """The user's Bitwarden export (unencrypted JSON) with one login in "Clients/Acme Corp"."""
    write_json(
        path,
        {
            "encrypted": False,
            "folders": [{"id": "f1", "name": "Clients/Acme Corp"}],
            "items": [bitwarden_login(1, "Core switch", "netadmin", "switch pw 9", folderId="f1")],
        },
    )


# --- the tests ----------------------------------------------------------------------------------------


def test_readme_install_blocks_name_what_exists():
    install, run_tests, _walk = sh_blocks(README.read_text(encoding="utf-8"))
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for command in install + run_tests:
        for extra in re.findall(r"pip install -e '?\.\[([\w,]+)\]", command):
            assert set(extra.split(",")) <= extras, (command, extras)
    assert install[-1].endswith("&& cvault demo"), install
    tests_command = run_tests[-1].rsplit("&& ", 1)[-1]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == tests_command, "'.ci/run' must end with the README's test command, verbatim"


def test_the_demo_the_readme_offers_runs_end_to_end():
    from tests.helpers import run_cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    proc = run_cli("demo", env=env, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert "demo complete" in proc.stdout
    # the step counter counts every titled step once, in order, up to its stated total (issue 17)
    counters = re.findall(r"^\[(\d+)/(\d+)\] ", proc.stdout, re.M)
    totals = {int(t) for _, t in counters}
    assert len(totals) == 1 and [int(n) for n, _ in counters] == list(range(1, totals.pop() + 1))


def test_readme_walkthrough_runs_as_written_in_a_fresh_shell(tmp_path):
    *_, walkthrough = sh_blocks(README.read_text(encoding="utf-8"))
    home = tmp_path / "home"
    home.mkdir()
    fake_xclip(tmp_path / "bin", home)
    bitwarden_export(home / "export.json")
    walk = Walk(home)
    shell = Shell(fresh_env(home, tmp_path / "bin"), home)
    try:
        steps = iter(enumerate(WALKTHROUGH))
        for command in walkthrough:
            n, step = next(steps, (None, None))
            assert step is not None, (
                f"README step {command!r} states no checked outcome: add it to WALKTHROUGH"
            )
            assert words(command) == step.pattern, (
                f"README step {n}: {words(command)!r}, expected {step.pattern!r}"
            )
            ran = shell.run(command, walk.answer)
            assert ran.rc == step.rc, f"{command}\nexit {ran.rc}, README says {step.rc}:\n{ran.output}"
            for text in step.says:
                assert re.search(text, ran.output), f"{command}: no {text!r} in\n{ran.output}"
            assert "Traceback" not in ran.output, ran.output
            if step.check is not None:
                step.check(walk, ran)
        assert next(steps, None) is None, "WALKTHROUGH checks steps the README no longer has"
    finally:
        shell.close()
    # nothing secret reached the shell's history or any file the walkthrough left in HOME
    for path in home.rglob("*"):
        if path.is_file() and path.name not in ("clipboard", "clipboard-writes"):
            data = path.read_bytes()
            for secret in (walk.firewall_password, walk.wifi_key, *walk.passwords.values()):
                assert secret.encode() not in data, (path, secret)
