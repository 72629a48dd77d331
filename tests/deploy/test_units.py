"""The documented install (issue 17): the systemd units and the cron line in deploy/, checked by
``systemd-analyze verify``, the same text in the docs, and the cron line run as cron would."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

UNITS = ROOT / "deploy" / "systemd"
CRON = ROOT / "deploy" / "cron" / "cvault-sweep"
CVAULT = "/opt/cvault/bin/cvault"
ANALYZE = shutil.which("systemd-analyze")


def _verify(folder: Path) -> subprocess.CompletedProcess:
    units = sorted(str(p) for p in folder.iterdir())
    return subprocess.run(
        [ANALYZE, "verify", *units], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )


def _installed_copy(tmp_path: Path, mutate=lambda text: text) -> Path:
    """The units as installed, with ExecStart pointing at this checkout's cvault (verify checks
    that the command exists and is executable)."""
    folder = tmp_path / "units"
    folder.mkdir()
    real = Path(sys.prefix) / "bin" / "cvault"
    assert real.exists(), real
    for unit in UNITS.iterdir():
        (folder / unit.name).write_text(mutate(unit.read_text().replace(CVAULT, str(real))))
    return folder


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (.ci/run installs it)")
def test_units_pass_systemd_analyze_verify(tmp_path):
    proc = _verify(_installed_copy(tmp_path))
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stderr


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (.ci/run installs it)")
def test_verify_catches_a_broken_unit(tmp_path):
    """verify exits 0 on some warnings: the check above also fails on any output; show it can."""
    folder = _installed_copy(tmp_path, lambda t: t.replace("LimitCORE=0", "LimitCORE=zero"))
    proc = _verify(folder)
    assert "LimitCORE" in proc.stdout + proc.stderr or "resource value" in proc.stdout + proc.stderr


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_both_services_are_hardened_and_agree():
    service = _directives((UNITS / "cvault.service").read_text())
    sweep = _directives((UNITS / "cvault-sweep.service").read_text())
    for unit in (service, sweep):
        assert unit["User"] == ["cvault"] and unit["UMask"] == ["0077"] and unit["LimitCORE"] == ["0"]
        assert unit["StateDirectory"] == ["cvault cvault-custody"] and unit["StateDirectoryMode"] == ["0700"]
        for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
            assert unit[key] == ["yes"], key
        assert unit["ProtectSystem"] == ["strict"] and unit["CapabilityBoundingSet"] == [""]
        assert "ReadWritePaths" not in unit  # StateDirectory= creates and opens what is written
        assert unit["ExecStart"][0].startswith(CVAULT + " ")  # one install path
    envs = [set(unit["Environment"]) for unit in (service, sweep)]
    assert envs[0] == envs[1]  # the same vault, custody file and key file
    assert sweep["Type"] == ["oneshot"] and "--every 1h" in sweep["ExecStart"][0]
    timer = _directives((UNITS / "cvault-sweep.timer").read_text())
    assert timer["OnCalendar"] == ["hourly"] and timer["Persistent"] == ["true"]


def test_docs_show_the_shipped_files():
    """docs/service.md and docs/sla.md show these files verbatim (one install, documented once)."""
    docs = (ROOT / "docs" / "service.md").read_text() + (ROOT / "docs" / "sla.md").read_text()
    for path in [*UNITS.iterdir(), CRON]:
        body = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
        assert body.strip() in docs, path.name
    assert "client-config-vault[server]" not in docs  # an extra that does not exist


def _cron_command() -> tuple[str, str]:
    lines = [line for line in CRON.read_text().splitlines() if line.strip() and not line.startswith("#")]
    job = [line for line in lines if re.match(r"^[\d*/,-]+\s", line)]
    assert len(job) == 1
    fields = job[0].split(None, 6)
    assert len(fields) == 7  # five time fields, the user (cron.d), the command
    return fields[5], fields[6]


def test_cron_line_runs_as_written(vdir, tmp_path):
    """The cron line, with this test's paths, run by sh as cron runs it: it writes only into the
    vault and hands its one log line to logger (no log file the service user cannot create)."""
    user, command = _cron_command()
    assert user == "cvault"
    assert ">" not in command.replace("2>&1", "")  # no redirection into a file
    custody = vdir.custody_file
    real = Path(sys.prefix) / "bin" / "cvault"
    command = (
        command.replace(CVAULT, str(real))
        .replace("/var/lib/cvault-custody/custody", str(custody))
        .replace("/var/lib/cvault", str(vdir.home))
        .replace("/etc/cvault/vault.key", str(vdir.key_file))
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "syslog"
    fake_logger = bin_dir / "logger"  # stands in for syslog: keeps what logger was given
    fake_logger.write_text(
        f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\ncat >> {shlex.quote(str(log))}\n'
    )
    fake_logger.chmod(0o755)
    env = {"SHELL": "/bin/sh", "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == "", proc.stdout + proc.stderr
    text = log.read_text()
    assert "-t cvault-sweep" in text and "nothing due" in text
    assert re.search(r"cvault sla sweep \S+Z: 0 shredded, ok", text), text
    assert not (tmp_path / "home").exists()  # nothing written outside the vault
    assert os.path.exists(vdir.home / "vault.db")
