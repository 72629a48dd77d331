"""Secret values round-trip byte for byte (issue 13, item 5; docs/cli.md, "Exact bytes").

Hypothesis generates values (any Unicode text, and arbitrary bytes for the file channel) and
sends them through every prompt-free channel: ``--from-stdin``, ``--file``, ``--fields-json``,
``secret import`` + ``secret export``, and the HTTPS API; each must come back exactly. Bytes that
are not UTF-8 are refused (exit 2, one line), never altered or stored.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.inproc import cvault
from tests.helpers import OPERATOR_TOKEN, add_client

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: text with the characters that used to be changed on the way in: \r\n, a lone \r, NUL, a BOM,
#: Unicode line separators, trailing spaces and newlines
TEXT = st.lists(
    st.one_of(
        st.sampled_from(["\r\n", "\r", "\n", "\x00", "\ufeff", "\u2028", "\x85", " ", "\t", "é"]),
        st.characters(exclude_categories=["Cs"]),
    ),
    min_size=1,
    max_size=40,
).map("".join)
_n = itertools.count()


@pytest.fixture
def world(vdir):
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    return vdir, vdir.env()


def _get(env, path: str) -> str:
    got = cvault(env, "--json", "secret", "get", "acme", path)
    assert got.code == 0, got.stderr
    return json.loads(got.stdout)["fields"]["text"]


def _expected_from_file(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text  # the one final line feed is not the value


@FAST
@given(text=TEXT)
def test_stdin_round_trip(world, text):
    vdir, env = world
    path = f"stdin/{next(_n)}"
    put = cvault(
        env, "secret", "put", "acme", path, "--type", "note", "--from-stdin", input=text.encode() + b"\n"
    )
    assert put.code == 0, put.stderr  # "\n\n" too: the value is the "\n" before the final one
    assert _get(env, path) == text


def test_stdin_with_only_its_line_feed_is_refused(world):
    vdir, env = world
    put = cvault(env, "secret", "put", "acme", "stdin/empty", "--type", "note", "--from-stdin", input=b"\n")
    assert put.code == 2 and len(put.stderr.strip().splitlines()) == 1, put.stderr


@FAST
@given(text=TEXT)
def test_file_round_trip(world, tmp_path_factory, text):
    vdir, env = world
    path = f"file/{next(_n)}"
    src = tmp_path_factory.mktemp("v") / "value"
    src.write_bytes(text.encode())
    want = _expected_from_file(text)  # may be empty: an empty note is a valid note
    put = cvault(env, "secret", "put", "acme", path, "--type", "note", "--file", str(src))
    assert put.code == 0, put.stderr
    assert _get(env, path) == want
    # the raw field output reproduces a file that ends in a line feed
    raw = cvault(env, "secret", "get", "acme", path, "--field", "text")
    assert raw.stdout == want.encode() + b"\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=80))
def test_arbitrary_bytes_through_file_exact_or_refused(world, tmp_path_factory, data):
    vdir, env = world
    path = f"bin/{next(_n)}"
    src = tmp_path_factory.mktemp("b") / "value"
    src.write_bytes(data)
    put = cvault(env, "secret", "put", "acme", path, "--type", "note", "--file", str(src))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert put.code == 2, put.stderr
        assert "not UTF-8 text" in put.stderr and "base64" in put.stderr
        assert len(put.stderr.strip().splitlines()) == 1
        assert cvault(env, "secret", "get", "acme", path).code == 5  # nothing stored
        return
    want = _expected_from_file(text)  # may be empty: an empty note is a valid note
    assert put.code == 0, put.stderr
    assert _get(env, path).encode() == want.encode()


@FAST
@given(text=TEXT, ascii_only=st.booleans())
def test_fields_json_round_trip(world, tmp_path_factory, text, ascii_only):
    vdir, env = world
    path = f"json/{next(_n)}"
    src = tmp_path_factory.mktemp("j") / "fields.json"
    src.write_bytes(json.dumps({"text": text}, ensure_ascii=ascii_only).encode())
    put = cvault(env, "secret", "put", "acme", path, "--type", "note", "--fields-json", str(src))
    assert put.code == 0, put.stderr
    assert _get(env, path) == text


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=1, max_size=5))
def test_import_export_round_trip(world, tmp_path_factory, texts):
    vdir, env = world
    prefix = f"imp{next(_n)}"
    folder = tmp_path_factory.mktemp("i")
    lines = [
        json.dumps({"path": f"{prefix}/{i}", "kind": "note", "fields": {"text": t}}, ensure_ascii=i % 2 == 0)
        for i, t in enumerate(texts)
    ]
    (folder / "in.jsonl").write_bytes(("\r\n".join(lines) + "\r\n").encode())  # CRLF lines are fine
    got = cvault(env, "secret", "import", "acme", str(folder / "in.jsonl"))
    assert got.code == 0, got.stderr
    out = folder / "out.jsonl"
    got = cvault(env, "client", "export", "acme", "--out", str(out))
    assert got.code == 0, got.stderr
    records = [json.loads(line) for line in out.read_bytes().decode("utf-8").split("\n") if line]
    exported = {r["path"]: r["fields"]["text"] for r in records if r["path"].startswith(prefix + "/")}
    assert exported == {f"{prefix}/{i}": t for i, t in enumerate(texts)}


def test_lone_surrogates_and_bad_utf8_are_refused_not_stored(world, tmp_path):
    vdir, env = world
    src = tmp_path / "f.json"
    src.write_text('{"text": "a\\ud800b"}')
    got = cvault(env, "secret", "put", "acme", "s/1", "--type", "note", "--fields-json", str(src))
    assert got.code == 2 and "surrogate" in got.stderr
    src.write_bytes(b'{"text": "\xff"}')
    got = cvault(env, "secret", "put", "acme", "s/1", "--type", "note", "--fields-json", str(src))
    assert got.code == 2 and "not UTF-8" in got.stderr
    # and the same through a real subprocess
    value = tmp_path / "crlf"
    value.write_bytes(b"line one\r\nline two\rthree\r\n")
    assert vdir.cli("secret", "put", "acme", "s/crlf", "--type", "note", "--file", str(value)).returncode == 0
    shown = vdir.cli("--json", "secret", "get", "acme", "s/crlf")
    assert json.loads(shown.stdout)["fields"]["text"] == "line one\r\nline two\rthree\r"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.helpers import make_vault
    from tests.server.harness import start_service

    base = tmp_path_factory.mktemp("api")
    vdir = make_vault(base)
    v = vdir.open()
    add_client(v, "acme")
    v.close()
    service = start_service(vdir, base / "service")
    yield service
    service.stop()


@settings(max_examples=25, deadline=None)
@given(text=TEXT)
def test_api_round_trip(served, text):
    api = served.client(OPERATOR_TOKEN)
    path = f"api/{next(_n)}"
    try:
        status, body = api.post(
            "/v1/secrets/put", {"client_name": "acme", "path": path, "kind": "note", "fields": {"text": text}}
        )
        assert status == 200, body
        status, body = api.post("/v1/secrets/get", {"client_name": "acme", "path": path})
        assert status == 200 and body["fields"]["text"] == text
    finally:
        api.close()
