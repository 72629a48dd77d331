"""Human output (issue 17): one time format, labels without Python reprs, tables that fit
``COLUMNS``, one-line usage errors with exit 2, help lists that are not cut, certificate times in
the order they happened."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from cli.main import COMMANDS, cli
from cli.render import human_value, when
from tests.helpers import run_cli

#: the one human time format
ONE_FORMAT = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\b")
#: anything else that looks like a time: microseconds, +00:00, a space instead of T
OTHER_FORMATS = re.compile(r"\d{2}:\d{2}:\d{2}(\.\d+|[+-]\d{2}:\d{2})|\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2027-03-31T00:00:00+00:00", "2027-03-31T00:00:00Z"),
        ("2027-03-31T00:00:00.775734Z", "2027-03-31T00:00:00Z"),
        ("2027-03-31T02:00:00+02:00", "2027-03-31T00:00:00Z"),
        ("2027-03-31 23:59:59", "2027-03-31T23:59:59Z"),
        (datetime(2027, 3, 31, 12, 0, 1, 999, tzinfo=timezone(timedelta(hours=-5))), "2027-03-31T17:00:01Z"),
        (None, "-"),
        ("office/firewall", "office/firewall"),
        ("2027-13-45T99:00:00Z", "2027-13-45T99:00:00Z"),  # not a time: left as it is
    ],
)
def test_one_time_format(value, shown):
    assert when(value) == shown


def test_human_values_are_never_python_reprs():
    shown = [human_value(v) for v in (None, True, False, [], ["a", "b"], 3)]
    assert shown == ["-", "yes", "no", "-", "a, b", "3"]


def _human_lines(text: str) -> None:
    assert "None" not in text and "True" not in text and "False" not in text, text
    assert not OTHER_FORMATS.search(text), text


def test_whoami_user_show_client_show_sla_show_speak_one_format(vdir):
    assert vdir.cli("client", "add", "acme", "--sla-end", "+400d").returncode == 0
    outputs = {}
    for args in (
        ["whoami"],
        ["user", "show", "operator"],
        ["user", "list"],
        ["client", "show", "acme"],
        ["client", "list"],
        ["sla", "show", "acme"],
        ["client", "access", "acme"],
    ):
        proc = vdir.cli(*args)
        assert proc.returncode == 0, proc.stderr
        _human_lines(proc.stdout)
        outputs[args[0] + " " + args[1] if len(args) > 1 else args[0]] = proc.stdout
    assert ONE_FORMAT.search(outputs["client show"])
    # labels are words, as in sla show: no snake_case keys
    assert not re.search(r"^\w+_\w+ ", outputs["client show"] + outputs["user show"], re.M)
    # whoami tells the idle expiry from the absolute end
    assert re.search(r"^session idle expiry\s+\S+Z$", outputs["whoami"], re.M)
    assert re.search(r"^session absolute end\s+\S+Z$", outputs["whoami"], re.M)


def test_tables_fit_columns_without_losing_a_word(vdir):
    for name in ("acme-industries-holding", "globex-international-services"):
        assert vdir.cli("client", "add", name, "--sla-end", "+400d").returncode == 0
    wide = vdir.cli("client", "access", "acme-industries-holding", env=vdir.env(COLUMNS="500"))
    narrow = vdir.cli("client", "access", "acme-industries-holding", env=vdir.env(COLUMNS="60"))
    assert wide.returncode == narrow.returncode == 0
    assert max(len(line) for line in wide.stdout.splitlines()) > 60  # the table needed fitting
    table = narrow.stdout.splitlines()[1:]
    assert max(len(line) for line in table) <= 60, narrow.stdout
    # every character of the wide table is still there (wrapped, not cut)
    assert sorted("".join(wide.stdout.splitlines()[1:]).replace(" ", "")) == sorted(
        "".join(table).replace(" ", "")
    )


def test_a_narrow_audit_log_wraps_free_text_and_keeps_every_time_whole(vdir):
    """At 100 columns the audit log's reasons wrap, its times do not (the README walkthrough's
    terminal), and a reason names a time in the one format (no microseconds)."""
    assert vdir.cli("client", "add", "acme", "--sla-end", "+365d").returncode == 0
    assert vdir.cli("sla", "expire", "acme", "--reason", "contract ended early by both").returncode == 0
    log = vdir.cli("audit", "log", "--client", "acme", env=vdir.env(COLUMNS="100"))
    assert log.returncode == 0, log.stderr
    lines = log.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, log.stdout
    times = ONE_FORMAT.findall(log.stdout)
    assert len(times) >= 3, log.stdout  # every event's time, and the times in the reasons
    assert not OTHER_FORMATS.search(log.stdout), log.stdout
    for line in lines[1:]:
        assert not re.match(r"\s+Z\b", line), log.stdout  # no time's last character on a line of its own


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["client", "add"], "cvault client add"),
        (["clent"], "cvault"),
        (["user", "add", "bob", "--role", "wizard"], "cvault user add"),
        (["secret", "get", "acme", "p", "--bogus"], "cvault secret get"),
        (["audit", "export", "--format", "xml"], "cvault audit export"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(vdir, args, where):
    proc = vdir.cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cvault: "), proc.stderr
    assert f"(see '{where} --help')" in lines[0] and "Usage:" not in proc.stderr


def _words(text: str) -> str:
    return "".join(text.split())  # help wraps at spaces and after hyphens


def test_help_lists_whole_descriptions():
    """No command's description is cut with '...' in ``cvault --help`` or a group's help."""
    import click

    top = run_cli("--help", env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert top.returncode == 0 and "..." not in top.stdout.split("Commands:")[1]
    listing = _words(top.stdout)
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        first = _words((command.help or "").split("\n\n")[0])
        assert first in listing, (name, first)
        if isinstance(command, click.Group):
            sub = run_cli(name, "--help", env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
            assert sub.returncode == 0 and "..." not in sub.stdout.split("Commands:")[1], sub.stdout
            for child in command.commands.values():
                assert _words((child.help or "").split("\n\n")[0]) in _words(sub.stdout), child.name


def test_certificate_times_in_the_order_they_happened(vdir):
    assert vdir.cli("client", "add", "initech", "--sla-end", "+1d", "--grace-days", "0").returncode == 0
    assert vdir.cli("sla", "expire", "initech", "--reason", "test").returncode == 0
    sweep = vdir.cli("sla", "sweep")
    assert sweep.returncode == 0 and "shredded initech" in sweep.stdout, sweep.stderr
    cert = vdir.cli("sla", "certificate", "initech")
    assert cert.returncode == 0, cert.stderr
    _human_lines(cert.stdout)
    names = ["shred started", "keys destroyed", "custody destroyed", "database scrubbed"]
    names += ["blobs deleted", "metadata purged", "issued"]
    found = {m.group(1): m.group(2) for m in re.finditer(r"^([a-z ]+?)\s{2,}(\S+Z)$", cert.stdout, re.M)}
    order = [line.split("  ")[0] for line in cert.stdout.splitlines() if line.split("  ")[0] in names]
    assert order == [n for n in names if n in order] and len(order) >= 5, cert.stdout
    times = [found[n] for n in order]
    assert times == sorted(times)
