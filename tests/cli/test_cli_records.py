"""Records engineers can live with, through the real CLI (issue 16): put refuses to drop fields
(exit 2), edit, restore and undelete, field options named as the fields (with the old aliases),
custom fields, tags, --otp, --generate and masking."""

from __future__ import annotations

import json

from cli.fastget import MASK, shown_fields
from tests.helpers import on_a_terminal


def _ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def _get(vdir, path, *extra):
    return json.loads(_ok(vdir.cli("secret", "get", "acme", path, "--json", *extra)).stdout)


def test_put_refuses_to_drop_fields_and_edit_restore_undelete(vdir):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    put = ["secret", "put", "acme", "office/firewall", "--type", "access"]
    _ok(vdir.cli(*put, "--host", "10.0.0.1", "--username", "admin", "--from-stdin", input="pw-1\n"))
    # the README's trap: a new password and a port, and host/username would be gone
    refused = vdir.cli(*put, "--port", "8443", "--from-stdin", input="pw-2\n")
    assert refused.returncode == 2
    assert (
        refused.stderr.count("\n") == 1
        and "host, username" in refused.stderr
        and "--replace" in refused.stderr
    )
    assert "pw-" not in refused.stderr
    assert _get(vdir, "office/firewall")["version"] == 1
    edit = ["secret", "edit", "acme", "office/firewall"]
    _ok(vdir.cli(*edit, "--port", "8443", "--from-stdin", input="pw-2\n"))
    got = _get(vdir, "office/firewall")
    assert got["fields"] == {"host": "10.0.0.1", "username": "admin", "port": 8443, "password": "pw-2"}
    _ok(vdir.cli(*edit, "--unset", "port", "--tag", "vpn", "--tags", "prod", "--custom", "Serial=FG-1"))
    got = _get(vdir, "office/firewall")
    assert got["version"] == 3 and "port" not in got["fields"]
    assert got["fields"]["tags"] == ["vpn", "prod"]
    assert got["fields"]["custom"] == {"Serial": {"value": "FG-1", "secret": False}}
    _ok(vdir.cli("secret", "rm", "acme", "office/firewall"))
    assert vdir.cli("secret", "get", "acme", "office/firewall").returncode == 5
    restored = json.loads(
        _ok(vdir.cli("secret", "restore", "acme", "office/firewall", "--version", "2", "--json")).stdout
    )
    assert restored == {
        "client": "acme",
        "path": "office/firewall",
        "kind": "access",
        "version": 5,
        "restored_from": 2,
    }
    assert _get(vdir, "office/firewall")["fields"]["port"] == 8443
    _ok(vdir.cli(*put, "--port", "1", "--replace", "--from-stdin", input="pw-9\n"))
    assert _get(vdir, "office/firewall")["fields"] == {"port": 1, "password": "pw-9"}


def test_options_are_the_field_names_and_old_names_still_work(vdir, tmp_path):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    wifi = ["secret", "put", "acme", "net/wifi", "--type", "network", "--from-stdin"]
    _ok(
        vdir.cli(
            *wifi,
            "--wifi-ssid",
            "Guest",
            "--addresses",
            "10.0.0.0/24",
            "--dns-servers",
            "1.1.1.1",
            input="wifi-pass-123\n",
        )
    )
    _ok(
        vdir.cli(
            *wifi, "--ssid", "Guest", "--address", "10.0.0.0/24", "--dns", "9.9.9.9", input="wifi-pass-123\n"
        )
    )
    fields = _get(vdir, "net/wifi")["fields"]
    assert fields["wifi_ssid"] == "Guest" and fields["dns_servers"] == ["9.9.9.9"]


def test_secret_custom_fields_totp_and_otp(vdir, tmp_path):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    pin, seed = tmp_path / "pin", tmp_path / "seed"
    pin.write_text("4321\n")
    seed.write_text("otpauth://totp/acme:admin?secret=JBSWY3DPEHPK3PXPJBSWY3DP&digits=8\n")
    _ok(
        vdir.cli(
            "secret",
            "put",
            "acme",
            "m365/admin",
            "--type",
            "account",
            "--username",
            "admin@acme.test",
            "--secret-file",
            "custom.PIN=" + str(pin),
            "--secret-file",
            "totp=" + str(seed),
            "--custom",
            "Tenant=acme.onmicrosoft.com",
            "--generate",
        )
    )
    got = _get(vdir, "m365/admin")
    assert got["totp"] is True and "totp" not in got["fields"]  # the seed only with --field totp
    assert got["fields"]["custom"]["PIN"] == {"value": "4321", "secret": True}
    assert len(got["fields"]["password"]) == 24
    shown = _ok(vdir.cli("secret", "get", "acme", "m365/admin", "--field", "totp")).stdout
    assert shown.startswith("otpauth://totp/")
    assert _ok(vdir.cli("secret", "get", "acme", "m365/admin", "--field", "custom.PIN")).stdout == "4321\n"
    code = _ok(vdir.cli("secret", "get", "acme", "m365/admin", "--otp")).stdout.strip()
    assert len(code) == 8 and code.isdigit()
    otp = json.loads(_ok(vdir.cli("secret", "get", "acme", "m365/admin", "--otp", "--json")).stdout)
    assert set(otp) >= {"code", "seconds_left", "digits", "algorithm"}
    # a secret value through argv is refused: --custom is for non-secret values only, and a
    # non-secret field cannot be smuggled through --secret-file
    bad = vdir.cli("secret", "edit", "acme", "m365/admin", "--secret-file", "username=" + str(pin))
    assert bad.returncode == 2 and "not a secret field" in bad.stderr


def test_generate_command_and_policy(vdir):
    out = _ok(vdir.cli("generate")).stdout.strip()
    assert len(out) == 24
    assert len(_ok(vdir.cli("generate", "--length", "40", "--charset", "alnum")).stdout.strip()) == 40
    assert vdir.cli("generate", "--length", "4").returncode == 2
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    _ok(vdir.cli("secret", "put", "acme", "n/w", "--type", "network", "--generate", "--length", "63"))
    key = _get(vdir, "n/w")["fields"]["wifi_key"]
    assert len(key) == 63 and key.isalnum()
    note = vdir.cli("secret", "put", "acme", "n/n", "--type", "note", "--generate")
    assert note.returncode == 2 and "has none" in note.stderr


def test_masking_on_a_terminal_only(vdir):
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    _ok(
        vdir.cli(
            "secret",
            "put",
            "acme",
            "x",
            "--type",
            "access",
            "--host",
            "h",
            "--from-stdin",
            input="hunter2-secret\n",
        )
    )
    piped = _ok(vdir.cli("secret", "get", "acme", "x")).stdout
    assert "hunter2-secret" in piped  # pipes unchanged
    shown = on_a_terminal(vdir, "secret", "get", "acme", "x")
    assert "hunter2-secret" not in shown and MASK in shown and "h" in shown
    assert "hunter2-secret" in on_a_terminal(vdir, "secret", "get", "acme", "x", "--reveal")


def test_shown_fields_mask_secret_custom_fields_and_never_show_the_seed():
    fields = {
        "username": "u",
        "password": "p",
        "totp": "JBSWY3DPEHPK3PXPJBSWY3DP",
        "custom": {"PIN": {"value": "1", "secret": True}, "Serial": {"value": "S", "secret": False}},
    }
    shown = shown_fields(fields, "account", reveal=False)
    assert shown["password"] == MASK and shown["custom.PIN"] == MASK and shown["custom.Serial"] == "S"
    revealed = shown_fields(fields, "account", reveal=True)
    assert revealed["password"] == "p" and revealed["custom.PIN"] == "1"
    assert "JBSWY" not in json.dumps(revealed)


def test_a_short_seed_edit_accepts_gives_a_code_not_an_internal_error(vdir, tmp_path):
    """The bug report: an 80-bit base32 seed passed ``secret edit`` and then ``--otp`` said
    "internal error" (pyotp wants 112 bits). Now what a write accepts, --otp computes."""
    _ok(vdir.cli("client", "add", "acme", "--sla-end", "+30d"))
    _ok(vdir.cli("secret", "put", "acme", "m365/admin", "--type", "account", "--username", "a"))
    seed = tmp_path / "seed"
    seed.write_text("JBSWY3DPEHPK3PXP\n")  # 16 characters: 80 bits
    _ok(vdir.cli("secret", "edit", "acme", "m365/admin", "--secret-file", "totp=" + str(seed)))
    got = vdir.cli("secret", "get", "acme", "m365/admin", "--otp")
    assert got.returncode == 0, got.stderr
    assert len(got.stdout.strip()) == 6 and got.stdout.strip().isdigit()
    seed.write_text("JBSWY3DP\n")  # 40 bits: refused at write time, one line
    bad = vdir.cli("secret", "edit", "acme", "m365/admin", "--secret-file", "totp=" + str(seed))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "JBSWY3DP" not in bad.stderr
