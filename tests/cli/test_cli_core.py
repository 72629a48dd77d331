"""The CLI as a user runs it (subprocesses): output shapes, input channels, exit codes."""

import json
import os
import stat

import click

from cli.main import COMMANDS, cli


def _ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def test_json_before_or_after_the_subcommand(vdir):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    before = json.loads(_ok(vdir.cli("--json", "client", "list")).stdout)
    after = json.loads(_ok(vdir.cli("client", "list", "--json")).stdout)
    assert before == after and before[0]["name"] == "acme" and before[0]["state"] == "active"


def test_put_from_stdin_file_and_fields_json(vdir, tmp_path):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "2099-01-01"))
    _ok(
        vdir.cli(
            "secret", "put", "acme", "n/stdin", "--type", "note", "--from-stdin", input="line one\nline two\n"
        )
    )
    value_file = tmp_path / "pw"
    value_file.write_text("file-password\n")
    _ok(
        vdir.cli(
            "secret",
            "put",
            "acme",
            "a/file",
            "--type",
            "access",
            "--file",
            str(value_file),
            "--host",
            "192.0.2.10",
            "--port",
            "22",
            "--protocol",
            "ssh",
            "--username",
            "root",
        )
    )
    fields = tmp_path / "fields.json"
    fields.write_text(json.dumps({"username": "jdoe", "email": "j@example.com", "password": "pw-json"}))
    _ok(vdir.cli("secret", "put", "acme", "u/jdoe", "--type", "account", "--fields-json", str(fields)))
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("-----BEGIN KEY-----\nabc\n-----END KEY-----\n")
    _ok(
        vdir.cli(
            "secret",
            "put",
            "acme",
            "a/ssh",
            "--type",
            "access",
            "--host",
            "h",
            "--secret-file",
            f"ssh_private_key={key_file}",
            input="",
        )
    )

    assert (
        _ok(vdir.cli("secret", "get", "acme", "n/stdin", "--field", "text")).stdout == "line one\nline two\n"
    )
    got = json.loads(_ok(vdir.cli("secret", "get", "acme", "a/file", "--json")).stdout)
    assert got["fields"] == {
        "password": "file-password",
        "host": "192.0.2.10",
        "port": 22,
        "protocol": "ssh",
        "username": "root",
    }
    assert got["kind"] == "access" and got["version"] == 1
    assert (
        json.loads(_ok(vdir.cli("secret", "get", "acme", "u/jdoe", "--json")).stdout)["fields"]["email"]
        == "j@example.com"
    )
    assert "BEGIN KEY" in _ok(vdir.cli("secret", "get", "acme", "a/ssh", "--field", "ssh_private_key")).stdout
    listing = json.loads(_ok(vdir.cli("secret", "list", "acme", "--json")).stdout)
    assert [r["path"] for r in listing] == ["a/file", "a/ssh", "n/stdin", "u/jdoe"]


def test_unknown_field_and_bad_options_are_one_line(vdir):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    _ok(vdir.cli("secret", "put", "acme", "x", "--type", "note", "--from-stdin", input="hi\n"))
    proc = vdir.cli("secret", "get", "acme", "x", "--field", "password")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = vdir.cli("client", "add", "bad\tname", "--sla-end", "+30d")
    assert proc.returncode == 2 and "invalid client name" in proc.stderr
    proc = vdir.cli("client", "add", "acme2", "--sla-end", "next tuesday")
    assert proc.returncode == 2 and "invalid date" in proc.stderr
    proc = vdir.cli("client", "add", "acme3", "--sla-end", "2001-01-01")
    assert proc.returncode == 2 and "future" in proc.stderr
    proc = vdir.cli("secret", "put", "acme", "y", "--type", "nope")
    assert proc.returncode == 2
    proc = vdir.cli("secret", "get", "nobody", "x")
    assert proc.returncode == 5 and proc.stderr.strip() == "cvault: no client named 'nobody'"


def test_import_export_through_the_cli(vdir, tmp_path):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    src = tmp_path / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"path": f"p/{i}", "kind": "note", "fields": {"text": str(i)}}) + "\n"
            for i in range(20)
        )
    )
    assert json.loads(_ok(vdir.cli("secret", "import", "acme", str(src), "--json")).stdout)["imported"] == 20
    out = tmp_path / "out.jsonl"
    _ok(vdir.cli("client", "export", "acme", "--out", str(out)))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert len(out.read_text().splitlines()) == 20
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "q", "kind": "note", "fields": {"text": "a"}}\nnot json\n')
    proc = vdir.cli("secret", "import", "acme", str(bad))
    assert proc.returncode == 2 and "line 2" in proc.stderr
    assert len(json.loads(_ok(vdir.cli("secret", "list", "acme", "--json")).stdout)) == 20


def test_copy_uses_the_clipboard_tool_via_stdin_and_clears(vdir, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    clip = tmp_path / "clipboard"
    log = tmp_path / "argv.log"
    for name, body in (
        ("xclip", f'echo "$@" >> {log}; if [ "$3" = "-o" ]; then cat {clip}; else cat > {clip}; fi'),
    ):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    _ok(vdir.cli("secret", "put", "acme", "x", "--type", "access", "--from-stdin", input="clip-secret\n"))
    env = vdir.env(PATH=f"{bin_dir}:{os.environ['PATH']}", CVAULT_CLIPBOARD_CLEAR_SECONDS="0", DISPLAY=":99")
    env.pop("WAYLAND_DISPLAY", None)
    proc = vdir.cli("secret", "get", "acme", "x", "--copy", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "clip-secret" not in proc.stdout + proc.stderr
    assert "clip-secret" not in log.read_text()  # never in argv
    import time

    no_display = vdir.env(PATH=f"{bin_dir}:{os.environ['PATH']}")
    no_display.pop("DISPLAY", None)
    no_display.pop("WAYLAND_DISPLAY", None)
    proc = vdir.cli("secret", "get", "acme", "x", "--copy", env=no_display)
    assert proc.returncode == 1 and "no clipboard available" in proc.stderr
    for _ in range(100):  # the detached clearer runs after 0 s here
        if clip.read_text() == "":
            break
        time.sleep(0.05)
    assert clip.read_text() == ""


def test_every_command_has_help_text():
    def walk(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None and (cmd.help or cmd.short_help), f"{prefix} {name} has no help"
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix} {name}")

    walk(cli, "cvault")
    # every registered command loads (a typo in the table fails here, not in front of a user)
    ctx = click.Context(cli, info_name="cvault")
    assert all(isinstance(cli.get_command(ctx, n), click.Command) for n in COMMANDS)
    assert set(COMMANDS) >= {"init", "client", "secret"}


def test_slots_list_add_remove(vdir, tmp_path):
    slots = json.loads(_ok(vdir.cli("slot", "list", "--json")).stdout)
    assert {s["kind"] for s in slots} == {"recovery", "keyfile"}
    added = json.loads(
        _ok(
            vdir.cli("slot", "add", "--kind", "keyfile", "--key-file", str(tmp_path / "second.key"), "--json")
        ).stdout
    )
    second = vdir.env(CVAULT_KEY_FILE=str(tmp_path / "second.key"))
    _ok(vdir.cli("client", "list", env=second))
    _ok(vdir.cli("slot", "remove", str(added["id"]), env=second))
    proc = vdir.cli("client", "list", env=second)
    assert proc.returncode == 3
    rec = json.loads(_ok(vdir.cli("slot", "add", "--kind", "recovery", "--json")).stdout)
    assert len(rec["recovery_key"].split("-")) == 13
    for s in json.loads(_ok(vdir.cli("slot", "list", "--json")).stdout):
        if s["kind"] == "recovery":
            _ok(vdir.cli("slot", "remove", str(s["id"])))
    remaining = json.loads(_ok(vdir.cli("slot", "list", "--json")).stdout)
    assert [s["kind"] for s in remaining] == ["keyfile"]
    proc = vdir.cli("slot", "remove", str(remaining[0]["id"]))
    assert proc.returncode == 2 and "last unseal slot" in proc.stderr


def test_cli_reference_is_current():
    """docs/cli-reference.md is generated from --help (python -m cli.reference); never stale."""
    from pathlib import Path

    from cli.reference import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "cli-reference.md"
    assert doc.read_text() == render(), "run: python -m cli.reference"
