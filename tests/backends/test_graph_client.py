"""GraphClient against the fake Graph over real HTTPS: uploads, downloads, deletes, listing,
retries, token handling and redaction. Waits go through the injected sleeper (never real)."""

from __future__ import annotations

import random

import pytest

from tests.fakes.fixtures import RegistryTokenProvider
from vault.backends.graph import (
    FRAGMENT_UNIT,
    GraphAuthenticationError,
    GraphClient,
    GraphHashMismatch,
    GraphNotFound,
    GraphPermanentError,
    GraphTransientError,
    parse_retry_after,
    redact_url,
)
from vault.backends.quickxor import quickxorhash
from vault.errors import BlobNotFound, PermanentBackendError, TransientBackendError

MiB = 1024 * 1024


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def content_requests(fake):
    return [r for r in fake.log if r.port == "content"]


def test_simple_put_and_get_round_trip(graph_client, fake_graph):
    data = blob(1000)
    item = graph_client.upload(fake_graph.drive_id, "f/x1", data)
    assert item["file"]["hashes"]["quickXorHash"] == quickxorhash(data)
    assert graph_client.download(fake_graph.drive_id, "f/x1") == data
    puts = [r for r in fake_graph.log if r.method == "PUT"]
    assert len(puts) == 1 and puts[0].path.endswith(":/content") and puts[0].port == "api"


def test_large_upload_uses_session_with_320k_fragments(graph_client, fake_graph):
    data = blob(4 * MiB + 1, 3)
    graph_client.upload(fake_graph.drive_id, "f/big", data)
    assert fake_graph.files()["f/big"] == data
    frags = [r for r in content_requests(fake_graph) if r.method == "PUT"]
    assert [r.body_length for r in frags] == [10 * FRAGMENT_UNIT, 4 * MiB + 1 - 10 * FRAGMENT_UNIT]
    assert all(not r.has_authorization for r in content_requests(fake_graph))
    assert any(r.path.endswith(":/createUploadSession") for r in fake_graph.log)


def test_upload_file_streams_one_fragment_at_a_time(graph_client, fake_graph, tmp_path, monkeypatch):
    """A file (a backup) is sent from disk fragment by fragment: never read whole into memory."""
    import os

    from vault.backends import graph as graph_module

    data = blob(4 * MiB + 12345, 5)
    path = tmp_path / "big.cvbk"
    path.write_bytes(data)
    reads: list[int] = []
    real_pread = os.pread

    def pread(fd, n, offset):
        reads.append(n)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(graph_module.os, "pread", pread)
    item = graph_client.upload_file(fake_graph.drive_id, "f/file", path)
    assert fake_graph.files()["f/file"] == data
    assert item["file"]["hashes"]["quickXorHash"] == quickxorhash(data)
    assert reads and max(reads) <= graph_client.fragment_size and sum(reads) == len(data)
    assert any(r.path.endswith(":/createUploadSession") for r in fake_graph.log)
    small = tmp_path / "small"
    small.write_bytes(b"abc")
    graph_client.upload_file(fake_graph.drive_id, "f/small", small)
    assert fake_graph.files()["f/small"] == b"abc"


def test_fragment_size_must_be_a_320k_multiple(graph_tokens):
    with pytest.raises(ValueError):
        GraphClient(graph_tokens, fragment_size=FRAGMENT_UNIT + 1)


def test_download_follows_302_without_authorization(graph_client, fake_graph):
    fake_graph.put_file("f/d1", b"payload")
    assert graph_client.download(fake_graph.drive_id, "f/d1") == b"payload"
    api = [r for r in fake_graph.log if r.port == "api"]
    dl = content_requests(fake_graph)
    assert api[-1].status == 302 and api[-1].has_authorization
    assert len(dl) == 1 and dl[0].status == 200 and not dl[0].has_authorization


def test_download_accepts_direct_200(graph_client, fake_graph):
    fake_graph.direct_download = True
    fake_graph.put_file("f/d2", b"direct")
    assert graph_client.download(fake_graph.drive_id, "f/d2") == b"direct"
    assert content_requests(fake_graph) == []


def test_download_retries_truncated_body(graph_client, fake_graph):
    data = blob(200_000, 9)
    fake_graph.put_file("f/d3", data)
    fake_graph.inject("truncate_body", port="content")
    assert graph_client.download(fake_graph.drive_id, "f/d3") == data


def test_download_missing_is_not_found(graph_client, fake_graph):
    with pytest.raises(GraphNotFound) as info:
        graph_client.download(fake_graph.drive_id, "f/none")
    assert isinstance(info.value, BlobNotFound)
    assert info.value.status == 404 and info.value.graph_code == "itemNotFound"
    assert info.value.method == "GET" and "/root:/f/none:/content" in info.value.url


def test_retry_after_integer_and_fractional_are_honoured(graph_client, fake_graph, recording_sleep):
    fake_graph.inject("429", retry_after="2", port="api", method="PUT")
    fake_graph.inject("503", retry_after="0.25", port="api", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/r", b"abc")
    assert recording_sleep.calls == [2.0, 0.25]
    assert fake_graph.files()["f/r"] == b"abc"


def test_backoff_is_exponential_with_full_jitter(graph_client, fake_graph, recording_sleep):
    fake_graph.inject("500", times=4, port="api")
    graph_client.upload(fake_graph.drive_id, "f/b", b"abc")
    assert len(recording_sleep.calls) == 4
    for attempt, delay in enumerate(recording_sleep.calls, start=1):
        assert 0 <= delay <= 0.5 * 2 ** (attempt - 1)


def test_attempts_are_bounded(fake_graph, graph_tokens, recording_sleep, test_ca):
    client = GraphClient(
        graph_tokens,
        base_url=fake_graph.base_url,
        verify=str(test_ca.ca_path),
        sleep=recording_sleep,
        max_attempts=4,
    )
    fake_graph.inject("503", times=10, retry_after="1", port="api")
    with pytest.raises(GraphTransientError) as info:
        client.upload(fake_graph.drive_id, "f/x", b"abc")
    assert isinstance(info.value, TransientBackendError)
    assert len([r for r in fake_graph.log if r.fault == "503"]) == 4
    assert recording_sleep.calls == [1.0, 1.0, 1.0]
    assert info.value.status == 503 and info.value.graph_code == "serviceNotAvailable"


def test_retry_after_beyond_the_cap_is_not_slept(graph_client, fake_graph, recording_sleep):
    fake_graph.inject("429", retry_after="3600", port="api")
    with pytest.raises(GraphTransientError):
        graph_client.upload(fake_graph.drive_id, "f/x", b"abc")
    assert recording_sleep.calls == []


def test_connection_reset_is_retried(graph_client, fake_graph, recording_sleep):
    fake_graph.inject("reset", port="api", method="PUT")
    fake_graph.inject("reset_after", port="api", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/c", b"abc")
    assert fake_graph.files() == {"f/c": b"abc"}
    assert len(recording_sleep.calls) == 2


def test_permanent_error_is_not_retried_and_carries_graph_error(graph_client, fake_graph, recording_sleep):
    fake_graph.inject("403", port="api")
    with pytest.raises(GraphPermanentError) as info:
        graph_client.upload(fake_graph.drive_id, "f/p", b"abc")
    exc = info.value
    assert isinstance(exc, PermanentBackendError)
    assert (exc.method, exc.status, exc.graph_code) == ("PUT", 403, "accessDenied")
    assert exc.url.startswith(fake_graph.base_url) and "?" not in exc.url
    assert exc.request_id
    assert "\n" not in str(exc)
    assert recording_sleep.calls == []


def test_401_refreshes_exactly_once_then_succeeds(graph_client, fake_graph, graph_tokens, token_registry):
    token_registry.revoke(graph_tokens.current)
    graph_client.upload(fake_graph.drive_id, "f/a", b"abc")
    assert graph_tokens.refreshes == 1
    statuses = [r.status for r in fake_graph.log]
    assert statuses == [401, 201]


def test_second_401_is_an_authentication_error(graph_client, fake_graph, graph_tokens):
    fake_graph.inject("401", times=2, port="api")
    with pytest.raises(GraphAuthenticationError) as info:
        graph_client.upload(fake_graph.drive_id, "f/a", b"abc")
    assert graph_tokens.refreshes == 1
    assert len(fake_graph.log) == 2
    assert info.value.code == "backend_authentication_failed"
    assert isinstance(info.value, PermanentBackendError)


def test_token_never_appears_in_errors(graph_client, fake_graph, graph_tokens, token_registry):
    fake_graph.echo_token = True
    token = graph_tokens.current
    raised = []
    fake_graph.inject("403", port="api")
    for action in (
        lambda: graph_client.upload(fake_graph.drive_id, "f/t", b"x"),
        lambda: graph_client.download(fake_graph.drive_id, "f/missing"),
        lambda: graph_client.drive("b!other-drive"),
    ):
        with pytest.raises(Exception) as info:
            action()
        raised.append(info.value)
    # a token the server rejects twice: the echo contains each token sent
    token_registry.revoke_all()
    graph_tokens.registry = type(token_registry)()  # refreshed tokens are not accepted either
    with pytest.raises(GraphAuthenticationError) as info:
        graph_client.item(fake_graph.drive_id, "f/x")
    raised.append(info.value)
    sent = set(token_registry.issued) | {token, graph_tokens.current}
    for exc in raised:
        text = " ".join([str(exc), repr(exc), repr(exc.args), str(vars(exc))])
        for tok in sent:
            assert tok not in text
        assert "You sent" in (exc.graph_message or "")  # the echo was there and got scrubbed


def test_upload_and_download_urls_never_get_authorization(graph_client, fake_graph):
    data = blob(5 * MiB, 5)
    graph_client.upload(fake_graph.drive_id, "f/u", data)
    assert graph_client.download(fake_graph.drive_id, "f/u") == data
    content = content_requests(fake_graph)
    assert len(content) >= 3
    assert not any(r.has_authorization for r in content)
    assert all(r.has_authorization for r in fake_graph.log if r.port == "api")


def test_token_is_never_sent_outside_the_graph_origin(graph_client, fake_graph):
    with pytest.raises(GraphPermanentError):
        graph_client._send("GET", f"{fake_graph.content.origin}/dl/x", auth=True)
    assert fake_graph.log == []


def test_session_resumes_after_416(graph_client, fake_graph):
    data = blob(5 * MiB, 6)
    fake_graph.inject("416", port="content", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/416", data)
    assert fake_graph.files()["f/416"] == data
    content = content_requests(fake_graph)
    assert [r.method for r in content][:3] == ["PUT", "GET", "PUT"]  # status GET after the 416


def test_session_resumes_after_connection_dropped_mid_fragment(graph_client, fake_graph):
    data = blob(7 * MiB, 7)
    fake_graph.inject("drop_mid_body", port="content", method="PUT")
    fake_graph.inject("reset_after", port="content", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/drop", data)
    assert fake_graph.files()["f/drop"] == data
    assert sum(1 for r in content_requests(fake_graph) if r.method == "GET") == 2
    assert len([r for r in fake_graph.log if r.path.endswith("createUploadSession")]) == 1


def test_session_restarts_after_404(graph_client, fake_graph):
    data = blob(5 * MiB, 8)
    # first fragment lands, then the session is gone: a new session must start from byte 0
    fake_graph.inject("expire_session", port="content", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/restart", data)
    assert fake_graph.files()["f/restart"] == data
    assert len([r for r in fake_graph.log if r.path.endswith("createUploadSession")]) == 2


def test_retry_after_on_fragment_is_honoured(graph_client, fake_graph, recording_sleep):
    data = blob(5 * MiB, 10)
    fake_graph.inject("429", retry_after="0.75", port="content", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/frag429", data)
    assert recording_sleep.calls == [0.75]
    assert fake_graph.files()["f/frag429"] == data


def test_hash_mismatch_is_retried_then_permanent(graph_client, fake_graph):
    fake_graph.inject("corrupt", port="api", method="PUT")
    graph_client.upload(fake_graph.drive_id, "f/h1", b"precious")
    assert fake_graph.files()["f/h1"] == b"precious"
    fake_graph.inject("corrupt", times=10, port="api", method="PUT")
    with pytest.raises(GraphHashMismatch) as info:
        graph_client.upload(fake_graph.drive_id, "f/h2", b"precious")
    assert isinstance(info.value, PermanentBackendError)
    assert len([r for r in fake_graph.log if r.method == "PUT" and r.path.endswith("/f/h2:/content")]) == 4


def test_hash_mismatch_on_session_upload(graph_client, fake_graph):
    data = blob(5 * MiB, 11)
    fake_graph.inject("corrupt", port="api", method="POST", path_contains="createUploadSession")
    graph_client.upload(fake_graph.drive_id, "f/h3", data)
    assert fake_graph.files()["f/h3"] == data


def test_permanent_delete_is_used_and_idempotent(graph_client, fake_graph):
    fake_graph.put_file("f/del", b"x")
    assert graph_client.delete_permanently(fake_graph.drive_id, "f/del") is True
    assert graph_client.delete_permanently(fake_graph.drive_id, "f/del") is False
    assert fake_graph.files() == {} and fake_graph.recycle_bin == []
    assert any(r.method == "POST" and r.path.endswith("/permanentDelete") for r in fake_graph.log)
    assert not any(r.method == "DELETE" for r in fake_graph.log)


def test_children_follow_next_link(graph_client, fake_graph):
    fake_graph.page_size = 3
    for i in range(10):
        fake_graph.put_file(f"f/c{i:02d}", b"x")
    names = [c["name"] for c in graph_client.children(fake_graph.drive_id, "f")]
    assert names == [f"c{i:02d}" for i in range(10)]
    pages = [r for r in fake_graph.log if r.path.endswith("/children")]
    assert len(pages) == 4
    assert list(graph_client.children(fake_graph.drive_id, "no-such-folder")) == []


def test_down_service_is_transient(graph_client, fake_graph, recording_sleep):
    fake_graph.down = "refuse"
    with pytest.raises(GraphTransientError):
        graph_client.item(fake_graph.drive_id, "f/x")
    assert len(recording_sleep.calls) == graph_client.max_attempts - 1
    fake_graph.down = "503"
    with pytest.raises(GraphTransientError):
        graph_client.item(fake_graph.drive_id, "f/x")
    fake_graph.down = None
    assert graph_client.item(fake_graph.drive_id, "f/x") is None


def test_untrusted_certificate_is_permanent(fake_graph, graph_tokens, recording_sleep):
    client = GraphClient(graph_tokens, base_url=fake_graph.base_url, sleep=recording_sleep)
    with pytest.raises(GraphPermanentError):
        client.item(fake_graph.drive_id, "f/x")
    assert recording_sleep.calls == []


def test_parse_retry_after_and_redaction():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(" 1.25 ") == 1.25
    for bad in (None, "", "soon", "-1", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"):
        assert parse_retry_after(bad) is None
    assert redact_url("https://h/up/abc?tempauth=SECRET#x") == "https://h/up/abc"


def test_registry_provider_is_a_token_provider(token_registry):
    p = RegistryTokenProvider(token_registry)
    first = p.token()
    assert p.token() == first and p.token(force_refresh=True) != first
