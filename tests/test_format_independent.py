"""docs/format.md is enough for a second implementation: ``tests/format_reader.py``, written from it
alone (no import of ``vault/`` or ``cli/``), opens a vault the CLI made, with its key file or its
passphrase and its custody file, and decrypts every record's current version and every audit
detail exactly as ``cvault secret get --json`` and ``cvault audit log --json`` show them.

The vault is made and filled by real ``cvault`` subprocesses: a passphrase slot (a passphrase with
precomposed characters, read back typed decomposed: docs/format.md section 2.1), several kinds,
a second version, a key rotation and a purge (both rotate the custody secret), a deleted record."""

import ast
import hashlib
import json
import os
import subprocess
import sys
import unicodedata

import pytest

from tests.helpers import ROOT, VaultDir, seed_operator
from vault.facade import Vault

READER = ROOT / "tests" / "format_reader.py"
PASSPHRASE = "Grüße aus Zürich — Ångström"
#: what docs/format.md permits the reader: these, and general standard-library modules
CRYPTO_MODULES = {"cryptography", "hashlib", "sqlite3", "unicodedata"}
STDLIB_OK = {"__future__", "argparse", "base64", "json", "sys", "pathlib"}


def _cli(vdir: VaultDir, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    proc = vdir.cli(*args, input=input)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("independent")
    home, key = base / "vault", base / "vault.key"
    pass_file = base / "passphrase"
    pass_file.write_text(unicodedata.normalize("NFC", PASSPHRASE) + "\n", encoding="utf-8")
    pass_file.chmod(0o600)  # cvault refuses secret files others can read
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAULT_")}
    init = subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), "init", "--key-file", str(key)]
        + ["--passphrase-file", str(pass_file), "--json"],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    vdir = VaultDir(home, key)
    v = Vault.open(home)
    v.unseal_key_file(key)
    seed_operator(v)  # the all-roles staff user of the CLI tests (tests/helpers.py)
    v.close()

    note = base / "note.txt"
    note.write_text("Übergabe:\n\track 3, port 12\nnicht vergessen ✓", encoding="utf-8")
    _cli(vdir, "client", "add", "acme", "--sla-end", "+365d")
    _cli(vdir, "client", "add", "globex", "--sla-end", "+365d")
    put = ("secret", "put")
    _cli(
        vdir,
        *put,
        "acme",
        "office/firewall",
        "--type",
        "access",
        "--host",
        "10.0.0.1",
        "--port",
        "443",
        "--username",
        "admin",
        "--from-stdin",
        input="first password\n",
    )
    _cli(
        vdir,
        *put,
        "acme",
        "office/firewall",
        "--type",
        "access",
        "--host",
        "10.0.0.1",
        "--port",
        "8443",
        "--username",
        "admin",
        "--protocol",
        "https",
        "--tag",
        "edge",
        "--custom",
        "rack=R3 ünten",
        "--from-stdin",
        input="s3cond pässword\n",
    )
    _cli(
        vdir,
        *put,
        "acme",
        "site b/wlan",
        "--type",
        "network",
        "--ssid",
        "ACME-Gäste",
        "--address",
        "10.20.0.0/24",
        "--address",
        "10.21.0.1",
        "--vlan",
        "20",
        "--from-stdin",
        input="wifi kéy\n",
    )
    _cli(vdir, *put, "acme", "old/thing", "--type", "note", "--from-stdin", input="to be deleted\n")
    _cli(vdir, "secret", "rm", "acme", "old/thing")
    _cli(vdir, "client", "rotate-key", "acme")
    _cli(vdir, *put, "globex", "notes/handover", "--type", "note", "--file", str(note))
    _cli(
        vdir,
        *put,
        "globex",
        "users/bob",
        "--type",
        "account",
        "--username",
        "bob",
        "--email",
        "bob@globex.example",
        "--from-stdin",
        input="hunter2\n",
    )
    _cli(
        vdir,
        *put,
        "globex",
        "users/leaver",
        "--type",
        "account",
        "--username",
        "leaver",
        "--from-stdin",
        input="gone\n",
    )
    _cli(vdir, "secret", "rm", "globex", "users/leaver", "--purge", "--yes")
    # a bulk import: its versions are packed (docs/format.md section 9)
    imports = vdir.home.parent / "imports.jsonl"
    imports.write_text(
        "".join(
            json.dumps(
                {
                    "path": f"bulk/dev-{i}",
                    "kind": "access",
                    "fields": {"host": f"h{i}", "password": f"p-ü{i}"},
                }
            )
            + "\n"
            for i in range(3)
        ),
        encoding="utf-8",
    )
    _cli(vdir, "secret", "import", "globex", str(imports))
    expected = []
    for client in ("acme", "globex"):
        for row in json.loads(_cli(vdir, "secret", "list", client, "--json").stdout):
            expected.append(json.loads(_cli(vdir, "secret", "get", client, row["path"], "--json").stdout))
    audit = json.loads(_cli(vdir, "audit", "log", "--limit", "0", "--json").stdout)
    custody = vdir.custody_file
    assert custody is not None and custody.exists()
    return vdir, pass_file, custody, expected, audit


def _read(vdir: VaultDir, custody, *unseal: str) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(READER),
            "--home",
            str(vdir.home),
            "--custody-file",
            str(custody),
            *unseal,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=vdir.home.parent,  # not the repository: nothing of cvault is importable by accident
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _compare(result: dict, expected: list[dict], audit: list[dict]) -> None:
    def key(r):
        return (r["client"], r["path"])

    got = sorted(result["records"], key=key)
    want = sorted(expected, key=key)
    assert [key(r) for r in got] == [key(r) for r in want]
    assert len(got) == 7  # the deleted and the purged records are not read; 3 packed ones are
    assert {r["fields"]["password"] for r in got if r["path"].startswith("bulk/")} == {"p-ü0", "p-ü1", "p-ü2"}
    # docs/format.md section 8: the reader checked the row MAC of every row a decision reads
    # (the users, sessions, clients, records and versions at least)
    assert result["row_macs"] > 20, result["row_macs"]
    for mine, theirs in zip(got, want, strict=True):
        assert (mine["kind"], mine["version"], mine["fields"]) == (
            theirs["kind"],
            theirs["version"],
            theirs["fields"],
        )
    firewall = next(r for r in got if r["path"] == "office/firewall")
    assert firewall["version"] == 2 and firewall["fields"]["password"] == "s3cond pässword"
    assert firewall["fields"]["tags"] == ["edge"]
    assert firewall["fields"]["custom"] == {"rack": {"value": "R3 ünten", "secret": False}}
    details = {e["seq"]: e["detail"] for e in audit if e.get("detail")}
    assert {e["seq"]: e["detail"] for e in result["audit"]} == details
    assert "site b/wlan" in details.values()


def test_an_independent_reader_decrypts_a_cli_vault_with_the_key_file(made):
    vdir, _, custody, expected, audit = made
    _compare(_read(vdir, custody, "--key-file", str(vdir.key_file)), expected, audit)


def test_an_independent_reader_decrypts_it_with_the_passphrase_typed_decomposed(made, tmp_path):
    vdir, _, custody, expected, audit = made
    typed = tmp_path / "typed"
    typed.write_text(unicodedata.normalize("NFD", PASSPHRASE) + "\n", encoding="utf-8")
    assert typed.read_bytes() != unicodedata.normalize("NFC", PASSPHRASE).encode() + b"\n"
    _compare(_read(vdir, custody, "--passphrase-file", str(typed)), expected, audit)


def test_the_reader_fails_with_a_wrong_custody_secret(made, tmp_path):
    """It really depends on the custody file: another file's secret opens nothing."""
    vdir, _, custody, _, _ = made
    text = custody.read_text(encoding="ascii")
    broken = tmp_path / "broken.custody"
    lines = text.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if line.startswith("k "))
    parts = lines[k].split(" ")
    parts[3] = "A" * 43 + "\n"
    lines[k] = " ".join(parts)
    body = "".join(lines[:-1]).encode("ascii")
    broken.write_bytes(body + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n")
    proc = subprocess.run(
        [sys.executable, "-I", str(READER), "--home", str(vdir.home), "--custody-file", str(broken)]
        + ["--key-file", str(vdir.key_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "InvalidTag" in proc.stderr


def test_the_reader_imports_only_what_docs_format_allows():
    tree = ast.parse(READER.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= CRYPTO_MODULES | STDLIB_OK, imported - CRYPTO_MODULES - STDLIB_OK
    assert not imported & {"vault", "cli", "tests"}
