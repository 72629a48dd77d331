"""A validation message names the bad field, never the value it refuses (review9 R9-4).

A value in the wrong field or column is often a secret: a CSV or JSON Lines export with shifted
columns, a password pasted into ``gateway``. The network record's IP validators quoted it in the
one line (``gateway: not an IP address: 's3cr3t...'``), which ends up in scroll-back, CI logs and
cron mail; so did an unknown record kind (a JSON Lines ``kind``, a CSV ``kind`` column) and the
KeePass reader's warning about non-standard ``TOTP Settings``. Through real ``cvault``
subprocesses; the HTTP API's error body is checked in tests/server/test_service.py
(docs/security.md guarantee 5)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import add_client, make_vault, run_cli
from vault.errors import InvalidInput
from vault.records import validate

SECRET = "s3cr3t-in-the-wrong-column"

#: a refused value in each field whose validator quoted it, and the field the line names
NETWORK = [
    ({"gateway": SECRET}, "gateway: not an IP address"),
    ({"dns_servers": ["192.0.2.1", SECRET]}, "dns_servers: not an IP address"),
    ({"addresses": [SECRET]}, "addresses: not an IP address or CIDR"),
]


@pytest.fixture(scope="module")
def vd(tmp_path_factory):
    vd = make_vault(tmp_path_factory.mktemp("echo"))
    v = vd.open()
    add_client(v, "acme")
    v.close()
    return vd


def _one_line(got, code: int = 2) -> str:
    out = got.stdout + got.stderr
    assert SECRET not in out, f"the refused value is echoed: {out.strip()}"
    lines = got.stderr.strip().splitlines()
    assert (got.returncode, len(lines)) == (code, 1), out
    return lines[0]


@pytest.mark.parametrize(("fields", "named"), NETWORK)
def test_secret_import_names_the_field_not_the_value(vd, tmp_path, fields, named):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"path": "net/office", "kind": "network", "fields": fields}) + "\n")
    got = run_cli("secret", "import", "acme", str(src), env=vd.env())
    assert _one_line(got) == f"cvault: line 1: invalid network record: {named}"


def test_secret_import_of_an_unknown_kind_does_not_quote_it(vd, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"path": "net/office", "kind": SECRET, "fields": {}}) + "\n")
    got = run_cli("secret", "import", "acme", str(src), env=vd.env())
    assert _one_line(got) == "cvault: line 1: unknown record type: use one of network, account, access, note"


def test_secret_put_names_the_field_not_the_value(vd):
    got = run_cli(
        "secret", "put", "acme", "net/office", "--type", "network", "--gateway", SECRET, env=vd.env()
    )
    assert _one_line(got) == "cvault: invalid network record: gateway: not an IP address"


def test_a_csv_kind_column_holding_a_secret_is_not_quoted(vd, tmp_path):
    src = tmp_path / "shifted.csv"
    src.write_text(f"title,kind,password\r\nfw,{SECRET},pw\r\n")
    got = run_cli(
        "import", "--from", "csv", str(src), "--client", "acme",
        "--map", "title=title", "--map", "kind=kind", "--map", "password=password",
        env=vd.env(),
    )  # fmt: skip
    line = _one_line(got)
    assert "unknown kind: use one of" in line and "row 1" in line, line


@pytest.mark.parametrize(("fields", "named"), NETWORK)
def test_the_library_message_never_echoes_the_value(fields, named):
    with pytest.raises(InvalidInput) as caught:
        validate.validate("network", fields)
    assert caught.value.message == f"invalid network record: {named}"
    with pytest.raises(InvalidInput) as caught:  # the model alone (fast_validate's reference)
        validate.model_validate("network", fields)
    assert caught.value.message == f"invalid network record: {named}"
