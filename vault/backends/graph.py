"""A small Microsoft Graph client for OneDrive drive items, on ``requests`` (docs/spec.md §8).

One object, :class:`GraphClient`, owns the HTTP session (after hvac's adapter): every request goes
through :meth:`GraphClient._send`, which adds the bearer token *only* to URLs under the configured
Graph base URL, never follows redirects by itself, retries what is retryable and turns every other
answer into an exception class below. Pre-authenticated upload and download URLs carry their own
credential in the URL, so they are sent without an Authorization header (Graph docs, "Upload large
files with an upload session": including it "may result in an HTTP 401"), and their query string is
never shown in an error.

Retry policy (Graph docs "Microsoft Graph throttling guidance" and "Best practices"):

* 429, 503 and other 5xx (except 501 and 507, which will not change) and connection errors or
  time-outs are retried, at most ``max_attempts`` (default 10) tries per request;
* when the answer has ``Retry-After`` (whole or fractional seconds) we wait exactly that long, as
  the throttling guidance asks; a wait longer than ``max_retry_after`` (300 s) is not slept through,
  the request fails as transient and the outbox tries again later;
* otherwise exponential back-off with full jitter: a uniform wait in
  ``[0, min(backoff_cap, backoff_base * 2**(attempt-1))]``, 0.5 s base and 30 s cap (AWS
  architecture blog "Exponential Backoff And Jitter": full jitter spreads retrying clients best);
* a 401 on a Graph API URL triggers exactly one token refresh per request; a second 401 raises
  :class:`GraphAuthenticationError`.

``sleep`` and the random source are parameters so tests never really wait.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import random as _random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from vault.backends.quickxor import QuickXorHash, quickxorhash
from vault.errors import BlobNotFound, PermanentBackendError, TransientBackendError

log = logging.getLogger(__name__)

DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# Graph docs: "Use upload sessions for files larger than 4 MiB"; PUT /content accepts up to 4 MiB.
SIMPLE_UPLOAD_LIMIT = 4 * 1024 * 1024
# Graph docs: every fragment except the last must be a multiple of 320 KiB (327,680 bytes), and a
# fragment must be under 60 MiB. 10 x 320 KiB = 3.125 MiB keeps a resend after a drop cheap.
FRAGMENT_UNIT = 320 * 1024
DEFAULT_FRAGMENT_SIZE = 10 * FRAGMENT_UNIT
MAX_FRAGMENT_SIZE = 60 * 1024 * 1024 - (60 * 1024 * 1024) % FRAGMENT_UNIT
_REDIRECTS = (301, 302, 303, 307, 308)
_RETRY_STATUSES_PERMANENT_5XX = (501, 505, 507)  # not implemented, version, insufficient storage
_MAX_MESSAGE = 300


class TokenProvider(Protocol):
    """Gives a bearer token for Graph. ``force_refresh`` bypasses any cached token (after a 401)."""

    def token(self, *, force_refresh: bool = False) -> str: ...


# ---------------------------------------------------------------------------------------------
# Errors: one class per outcome, each carrying method, redacted URL, status and the Graph error.


class GraphErrorInfo:
    """Mixin with what went wrong. Never holds a token: the URL is redacted, bodies are scrubbed."""

    method: str = ""
    url: str = ""
    status: int | None = None
    graph_code: str | None = None
    graph_message: str | None = None
    request_id: str | None = None

    def _set_info(self, method, url, status, graph_code, graph_message, request_id) -> None:
        self.method, self.url, self.status = method, url, status
        self.graph_code, self.graph_message, self.request_id = graph_code, graph_message, request_id


def _make_error(
    cls,
    what: str,
    *,
    method: str,
    url: str,
    status: int | None = None,
    graph_code: str | None = None,
    graph_message: str | None = None,
    request_id: str | None = None,
):
    parts = [f"Graph {method} {url}: {what}"]
    if status is not None:
        parts.append(f"HTTP {status}")
    if graph_code:
        parts.append(graph_code)
    if graph_message:
        parts.append(graph_message)
    if request_id:
        parts.append(f"request-id {request_id}")
    message = " ".join(" - ".join(parts).split())[: _MAX_MESSAGE * 2]
    exc = cls(message)
    exc._set_info(method, url, status, graph_code, graph_message, request_id)
    return exc


class GraphTransientError(GraphErrorInfo, TransientBackendError):
    """Microsoft Graph is temporarily unavailable (throttled, 5xx or network); retry later."""

    code = "backend_transient"


class GraphPermanentError(GraphErrorInfo, PermanentBackendError):
    """Microsoft Graph refused the request."""

    code = "backend_permanent"


class GraphAuthenticationError(GraphPermanentError):
    """Microsoft Graph rejected the access token twice (check the app registration and consent)."""

    code = "backend_authentication_failed"


class GraphHashMismatch(GraphPermanentError):
    """the content stored in OneDrive does not match what was uploaded (quickXorHash differs)."""

    code = "backend_integrity"


class GraphNotFound(GraphErrorInfo, BlobNotFound):
    """the item does not exist in OneDrive."""


class _SessionGone(Exception):
    """Internal: the upload session expired or was lost (404); start a new one."""


# ---------------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL without query or fragment (pre-authenticated URLs carry their credential there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _preauth_label(url: str) -> str:
    """Pre-authenticated URLs: the path is itself the session secret on real OneDrive hosts."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/[pre-authenticated]"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (integer or fractional); None if absent or unusable.

    The HTTP-date form (RFC 9110 10.2.3) is not used by Graph; it falls back to back-off.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def encode_path(path: str) -> str:
    """Percent-encode a drive-relative path for ``root:/{path}:`` addressing."""
    return quote(path.strip("/"), safe="/")


_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")


class GraphClient:
    """Microsoft Graph client for one drive's items. Thread-safe: share one per process."""

    def __init__(
        self,
        token_provider: TokenProvider,
        *,
        base_url: str = DEFAULT_GRAPH_BASE_URL,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 10,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 300.0,
        fragment_size: int = DEFAULT_FRAGMENT_SIZE,
        simple_upload_limit: int = SIMPLE_UPLOAD_LIMIT,
        max_hash_retries: int = 3,
        max_session_restarts: int = 3,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: _random.Random | None = None,
        session: requests.Session | None = None,
        pool_size: int = 16,
    ):
        if fragment_size <= 0 or fragment_size % FRAGMENT_UNIT or fragment_size > MAX_FRAGMENT_SIZE:
            raise ValueError("fragment_size must be a positive multiple of 320 KiB below 60 MiB")
        if not 0 <= simple_upload_limit <= SIMPLE_UPLOAD_LIMIT:
            raise ValueError("simple_upload_limit must be at most 4 MiB")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        base = urlsplit(self.base_url)
        if base.scheme != "https" or not base.netloc:
            raise ValueError("Graph base URL must be https://host/version")
        self._origin = f"{base.scheme}://{base.netloc}".lower()
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.fragment_size = fragment_size
        self.simple_upload_limit = simple_upload_limit
        self.max_hash_retries = max_hash_retries
        self.max_session_restarts = max_session_restarts
        self._tokens = token_provider
        self._sleep = sleep
        self._rng = rng if rng is not None else _random.Random()  # noqa: S311 - back-off jitter, not a secret
        self._rng_lock = threading.Lock()
        # The last few bearer tokens sent, scrubbed from any server text that echoes one back.
        self._recent_tokens: collections.deque[str] = collections.deque(maxlen=8)
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # trust_env off: .netrc could otherwise add an Authorization header to the
            # pre-authenticated URLs. The CA bundle variables are honoured explicitly below.
            session.trust_env = False
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
        self._session = session
        self.verify = verify
        if verify is True:  # requests' own variables, read here because trust_env is off
            self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------------

    def api_url(self, path: str) -> str:
        return self.base_url + path

    def _is_api_url(self, url: str) -> bool:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}".lower() == self._origin

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
            with self._rng_lock:
                delay = self._rng.uniform(0, ceiling)
        self._sleep(delay)

    def _remember(self, token: str) -> str:
        with self._rng_lock:
            if token not in self._recent_tokens:
                self._recent_tokens.append(token)
        return token

    def _scrub(self, text: str, token: str | None) -> str:
        with self._rng_lock:
            tokens = list(self._recent_tokens)
        for known in tokens + ([token] if token else []):
            if known:
                text = text.replace(known, "[redacted]")
        return _BEARER.sub("Bearer [redacted]", text)

    def _error_from(
        self, cls, what: str, method: str, shown_url: str, resp: requests.Response | None, token: str | None
    ):
        code = message = request_id = None
        status = None
        retry_after = None
        if resp is not None:
            status = resp.status_code
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            request_id = resp.headers.get("request-id")
            try:
                body = resp.json()
                err = body.get("error") if isinstance(body, dict) else None
            except ValueError:
                err = None
            if isinstance(err, dict):
                code = str(err.get("code") or "")[:80] or None
                msg = err.get("message")
                if isinstance(msg, str):
                    message = self._scrub(" ".join(msg.split()), token)[:_MAX_MESSAGE]
                inner = err.get("innerError") or err.get("innererror")
                if isinstance(inner, dict) and not request_id:
                    rid = inner.get("request-id")
                    request_id = str(rid)[:64] if rid else None
        exc = _make_error(
            cls,
            what,
            method=method,
            url=shown_url,
            status=status,
            graph_code=code,
            graph_message=message,
            request_id=request_id,
        )
        if isinstance(exc, TransientBackendError):
            exc.retry_after = retry_after  # the outbox waits at least this long (docs/onedrive.md)
        return exc

    def _raise_for(self, method: str, shown_url: str, resp: requests.Response, token: str | None = None):
        status = resp.status_code
        if status == 404 or status == 410:
            raise self._error_from(GraphNotFound, "not found", method, shown_url, resp, token)
        if status == 401:
            raise self._error_from(
                GraphAuthenticationError, "access token rejected", method, shown_url, resp, token
            )
        if status in (408, 423, 429) or (status >= 500 and status not in _RETRY_STATUSES_PERMANENT_5XX):
            raise self._error_from(
                GraphTransientError, "temporarily unavailable", method, shown_url, resp, token
            )
        raise self._error_from(GraphPermanentError, "request refused", method, shown_url, resp, token)

    def _send(
        self,
        method: str,
        url: str,
        *,
        auth: bool,
        data: bytes | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """Send one logical request with retries; returns any non-retryable response.

        ``auth=True`` adds the bearer token and is refused for URLs outside the Graph origin, so a
        token can never leak to a pre-authenticated or redirected host. Retryable statuses that
        exhaust their attempts raise :class:`GraphTransientError`; everything else is returned for
        the caller to map (it knows whether 404 means "gone" or "error").
        """
        if auth and not self._is_api_url(url):
            raise _make_error(
                GraphPermanentError,
                "refusing to send the access token to a non-Graph host",
                method=method,
                url=redact_url(url),
            )
        shown = redact_url(url) if auth else _preauth_label(url)
        attempt = 0
        refreshed = False
        token = self._remember(self._tokens.token()) if auth else None
        while True:
            attempt += 1
            send_headers = dict(headers or {})
            if auth:
                send_headers["Authorization"] = f"Bearer {token}"
            try:
                resp = self._session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    json=json_body,
                    headers=send_headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    verify=self.verify,
                )
            except requests.exceptions.SSLError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc) or not retry or attempt >= self.max_attempts:
                    raise _make_error(
                        GraphPermanentError
                        if "CERTIFICATE_VERIFY_FAILED" in str(exc)
                        else GraphTransientError,
                        "TLS failure",
                        method=method,
                        url=shown,
                    ) from None
                log.debug("Graph %s %s: TLS error, attempt %d", method, shown, attempt)
                self._backoff(attempt, None)
                continue
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if not retry or attempt >= self.max_attempts:
                    raise _make_error(GraphTransientError, kind, method=method, url=shown) from None
                log.debug("Graph %s %s: %s, attempt %d", method, shown, kind, attempt)
                self._backoff(attempt, None)
                continue
            status = resp.status_code
            log.debug("Graph %s %s -> %d", method, shown, status)
            if status == 401 and auth:
                if refreshed:
                    raise self._error_from(
                        GraphAuthenticationError,
                        "access token rejected after refresh",
                        method,
                        shown,
                        resp,
                        token,
                    )
                refreshed = True
                attempt -= 1  # the refresh is not a failed attempt
                token = self._remember(self._tokens.token(force_refresh=True))
                continue
            retryable = status in (429, 408) or (
                status >= 500 and status not in _RETRY_STATUSES_PERMANENT_5XX
            )
            if retryable and retry:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if attempt >= self.max_attempts or (
                    retry_after is not None and retry_after > self.max_retry_after
                ):
                    self._raise_for(method, shown, resp, token)
                self._backoff(attempt, retry_after)
                continue
            return resp

    def _json(self, method: str, shown_url: str, resp: requests.Response) -> dict:
        try:
            body = resp.json()
        except ValueError:
            raise _make_error(
                GraphTransientError,
                "invalid JSON in answer",
                method=method,
                url=shown_url,
                status=resp.status_code,
            ) from None
        if not isinstance(body, dict):
            raise _make_error(
                GraphTransientError,
                "unexpected JSON in answer",
                method=method,
                url=shown_url,
                status=resp.status_code,
            )
        return body

    def _api(self, method: str, path: str, *, ok=(200,), not_found_ok: bool = False, **kwargs):
        """Graph API call: returns the response for an ``ok`` status, None for 404 if allowed."""
        url = path if path.startswith("https://") else self.api_url(path)
        resp = self._send(method, url, auth=True, **kwargs)
        if resp.status_code in ok:
            return resp
        if resp.status_code == 404 and not_found_ok:
            return None
        self._raise_for(method, redact_url(url), resp)

    # -- drive items -------------------------------------------------------------------------

    def _item_path(self, drive_id: str, path: str) -> str:
        return f"/drives/{quote(drive_id, safe='')}/root:/{encode_path(path)}"

    def drive(self, drive_id: str) -> dict:
        """The drive resource (``GET /drives/{id}``): id, driveType, quota, owner."""
        path = f"/drives/{quote(drive_id, safe='')}"
        return self._json("GET", path, self._api("GET", path))

    def item(self, drive_id: str, path: str) -> dict | None:
        """Metadata of the item at ``path`` (``file.hashes.quickXorHash``, eTag, size), None if absent."""
        api_path = self._item_path(drive_id, path)
        resp = self._api("GET", api_path, not_found_ok=True)
        return None if resp is None else self._json("GET", api_path, resp)

    def children(
        self,
        drive_id: str,
        path: str,
        *,
        page_size: int | None = None,
        select: str = "id,name,size,file,folder",
    ) -> Iterator[dict]:
        """Children of the folder at ``path`` ("" for the drive root), following ``@odata.nextLink``.

        A missing folder has no children. Graph pages default to 200 items; ``page_size`` sets
        ``$top``. The next link is an absolute Graph URL and is only followed on the Graph origin.
        """
        if path.strip("/"):
            url = self.api_url(self._item_path(drive_id, path) + ":/children")
        else:
            url = self.api_url(f"/drives/{quote(drive_id, safe='')}/root/children")
        query = {"$select": select}
        if page_size:
            query["$top"] = str(page_size)
        params: dict[str, str] | None = query
        pages = 0
        while url:
            pages += 1
            if pages > 100_000:  # bound: 100k pages x 200 items is far beyond any vault
                raise _make_error(GraphPermanentError, "too many pages", method="GET", url=redact_url(url))
            resp = self._api("GET", url, params=params, not_found_ok=True)
            if resp is None:
                return
            body = self._json("GET", redact_url(url), resp)
            value = body.get("value")
            if not isinstance(value, list):
                raise _make_error(
                    GraphTransientError, "children answer without value", method="GET", url=redact_url(url)
                )
            yield from (v for v in value if isinstance(v, dict))
            url = body.get("@odata.nextLink") or ""
            params = None  # the next link carries the query

    def download(self, drive_id: str, path: str) -> bytes:
        """Content of the file at ``path``. Follows the 302 to the pre-authenticated download URL
        ourselves, without the Authorization header; a direct 200 is accepted too."""
        api_path = self._item_path(drive_id, path) + ":/content"
        for _ in range(3):  # a download URL can expire between the 302 and our GET
            resp = self._api("GET", api_path, ok=(200,) + _REDIRECTS)
            if resp.status_code == 200:
                return resp.content
            location = resp.headers.get("Location")
            if not location:
                raise _make_error(
                    GraphPermanentError,
                    "redirect without Location",
                    method="GET",
                    url=redact_url(self.api_url(api_path)),
                    status=resp.status_code,
                )
            target = urljoin(resp.url or self.api_url(api_path), location)
            if urlsplit(target).scheme != "https":
                raise _make_error(
                    GraphPermanentError,
                    "refusing a non-HTTPS download URL",
                    method="GET",
                    url=redact_url(self.api_url(api_path)),
                )
            got = self._send("GET", target, auth=False)
            if got.status_code == 200:
                return got.content
            if got.status_code in (401, 403, 404, 410):
                continue  # expired or revoked pre-authenticated URL: ask Graph for a fresh one
            self._raise_for("GET", _preauth_label(target), got)
        raise _make_error(
            GraphTransientError,
            "download URL kept failing",
            method="GET",
            url=redact_url(self.api_url(api_path)),
        )

    def delete_permanently(self, drive_id: str, path: str) -> bool:
        """Permanently delete the item at ``path`` (``POST /items/{id}/permanentDelete``: no recycle
        bin). Returns False if it was already gone (404 on lookup or on delete): deletes are
        idempotent so a crashed shred can simply run again."""
        meta = self.item(drive_id, path)
        if meta is None:
            return False
        item_id = meta.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise _make_error(
                GraphTransientError,
                "item without id",
                method="GET",
                url=redact_url(self.api_url(self._item_path(drive_id, path))),
            )
        api_path = f"/drives/{quote(drive_id, safe='')}/items/{quote(item_id, safe='')}/permanentDelete"
        resp = self._api("POST", api_path, ok=(200, 204), not_found_ok=True)
        return resp is not None

    # -- uploads -----------------------------------------------------------------------------

    def upload(self, drive_id: str, path: str, data: bytes) -> dict:
        """Store ``data`` at ``path`` (replacing), check the returned quickXorHash, return the item.

        Up to 4 MiB a simple PUT; above, an upload session. A hash mismatch is retried
        ``max_hash_retries`` times, then raises :class:`GraphHashMismatch`.
        """
        data = bytes(data)
        view = memoryview(data)
        return self._upload(
            drive_id, path, len(data), lambda start, end: bytes(view[start:end]), quickxorhash(data)
        )

    def upload_file(self, drive_id: str, path: str, file: str | os.PathLike[str]) -> dict:
        """:meth:`upload` of a file, streamed: memory stays bounded by one fragment whatever the
        file's size (a backup of a large vault). The file must not change while it is sent."""
        with open(file, "rb") as fh:
            fd = os.fstat(fh.fileno())
            digest = QuickXorHash()
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)

            def read(start: int, end: int) -> bytes:
                parts, at = [], start
                while at < end:
                    piece = os.pread(fh.fileno(), end - at, at)
                    if not piece:
                        raise _make_error(
                            GraphTransientError, "the file being uploaded shrank", method="PUT", url=path
                        )
                    parts.append(piece)
                    at += len(piece)
                return b"".join(parts)

            return self._upload(drive_id, path, fd.st_size, read, digest.b64digest())

    def _upload(
        self, drive_id: str, path: str, total: int, read: Callable[[int, int], bytes], expected: str
    ) -> dict:
        for _ in range(self.max_hash_retries + 1):
            if total <= self.simple_upload_limit:
                item = self._upload_simple(drive_id, path, read(0, total))
            else:
                item = self._upload_session(drive_id, path, total, read, expected)
            got = self._hash_of(drive_id, path, item)
            if got == expected:
                return item
            log.debug("Graph upload %s: quickXorHash mismatch, retrying", path)
        raise _make_error(
            GraphHashMismatch,
            "quickXorHash mismatch after upload",
            method="PUT",
            url=redact_url(self.api_url(self._item_path(drive_id, path))),
        )

    def _hash_of(self, drive_id: str, path: str, item: dict | None) -> str | None:
        for candidate in (item, None):
            if candidate is None:
                candidate = self.item(drive_id, path) or {}
            hashes = (candidate.get("file") or {}).get("hashes") or {}
            value = hashes.get("quickXorHash")
            if isinstance(value, str) and value:
                return value
        return None

    def _upload_simple(self, drive_id: str, path: str, data: bytes) -> dict:
        api_path = self._item_path(drive_id, path) + ":/content"
        resp = self._api(
            "PUT", api_path, ok=(200, 201), data=data, headers={"Content-Type": "application/octet-stream"}
        )
        return self._json("PUT", redact_url(self.api_url(api_path)), resp)

    def _create_session(self, drive_id: str, path: str) -> str:
        api_path = self._item_path(drive_id, path) + ":/createUploadSession"
        body = {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
        resp = self._api("POST", api_path, ok=(200,), json_body=body)
        info = self._json("POST", redact_url(self.api_url(api_path)), resp)
        url = info.get("uploadUrl")
        if not isinstance(url, str) or urlsplit(url).scheme != "https":
            raise _make_error(
                GraphTransientError,
                "upload session without an HTTPS uploadUrl",
                method="POST",
                url=redact_url(self.api_url(api_path)),
            )
        return url

    @staticmethod
    def _next_offset(body: dict, total: int) -> int | None:
        ranges = body.get("nextExpectedRanges")
        if not isinstance(ranges, list) or not ranges:
            return None
        first = str(ranges[0]).split("-", 1)[0]
        if not first.isdigit() or int(first) > total:
            return None
        return int(first)

    def _session_status(self, upload_url: str, total: int) -> int:
        resp = self._send("GET", upload_url, auth=False)
        if resp.status_code in (404, 410):
            raise _SessionGone()
        if resp.status_code != 200:
            self._raise_for("GET", _preauth_label(upload_url), resp)
        offset = self._next_offset(self._json("GET", _preauth_label(upload_url), resp), total)
        if offset is None:
            raise _SessionGone()
        return offset

    def _cancel_session(self, upload_url: str) -> None:
        with contextlib.suppress(GraphTransientError):  # sessions expire by themselves: a courtesy
            self._send("DELETE", upload_url, auth=False, retry=False)

    def _upload_session(
        self, drive_id: str, path: str, total: int, read: Callable[[int, int], bytes], expected: str
    ) -> dict:
        """Upload session: fragments of ``fragment_size`` (a 320 KiB multiple), no Authorization
        header on the upload URL. On 416, a dropped connection or a 5xx we GET the session status
        and resume from ``nextExpectedRanges``; on 404 (expired or lost session) we start again."""
        for _restart in range(self.max_session_restarts + 1):
            upload_url = self._create_session(drive_id, path)
            label = _preauth_label(upload_url)
            offset = 0
            failures = 0
            sent_last = False
            # Bound: every fragment may fail max_attempts times before we give up.
            for _step in range((total // self.fragment_size + 1) * (self.max_attempts + 1)):
                end = min(offset + self.fragment_size, total)
                headers = {
                    "Content-Range": f"bytes {offset}-{end - 1}/{total}",
                    "Content-Type": "application/octet-stream",
                }
                sent_last = sent_last or end == total
                try:
                    try:
                        resp = self._send(
                            "PUT",
                            upload_url,
                            auth=False,
                            data=read(offset, end),
                            headers=headers,
                            retry=False,
                        )
                    except GraphTransientError:
                        failures += 1
                        if failures >= self.max_attempts:
                            raise
                        self._backoff(failures, None)
                        offset = self._session_status(upload_url, total)
                        continue
                    status = resp.status_code
                    if status in (200, 201):
                        return self._json("PUT", label, resp)
                    if status == 202:
                        nxt = self._next_offset(self._json("PUT", label, resp), total)
                        offset = nxt if nxt is not None else self._session_status(upload_url, total)
                        failures = 0
                        continue
                    if status in (404, 410):
                        raise _SessionGone()
                    if status == 416:
                        failures += 1
                        offset = self._session_status(upload_url, total)
                        continue
                    if status in (429, 408) or (
                        status >= 500 and status not in _RETRY_STATUSES_PERMANENT_5XX
                    ):
                        failures += 1
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        if failures >= self.max_attempts or (
                            retry_after is not None and retry_after > self.max_retry_after
                        ):
                            self._raise_for("PUT", label, resp)
                        self._backoff(failures, retry_after)
                        offset = self._session_status(upload_url, total)
                        continue
                    self._cancel_session(upload_url)
                    self._raise_for("PUT", label, resp)
                except _SessionGone:
                    if sent_last:
                        # The last fragment may have been committed and its answer lost.
                        done = self.item(drive_id, path)
                        if done is not None and self._hash_of(drive_id, path, done) == expected:
                            return done
                    break
            else:
                self._cancel_session(upload_url)
                raise _make_error(
                    GraphTransientError, "upload session made no progress", method="PUT", url=label
                )
        raise _make_error(
            GraphTransientError,
            "upload session kept expiring",
            method="PUT",
            url=redact_url(self.api_url(self._item_path(drive_id, path))),
        )

    # -- sites ---------------------------------------------------------------------------------

    def site_drive_id(self, hostname: str, site_path: str, library: str | None = None) -> str:
        """Resolve a SharePoint site (``contoso.sharepoint.com``, ``/sites/IT``) and document
        library name (default: the site's default library) to a drive id."""
        site_api = f"/sites/{quote(hostname, safe='')}:/{encode_path(site_path)}"
        site = self._json("GET", site_api, self._api("GET", site_api))
        site_id = site.get("id")
        if not isinstance(site_id, str):
            raise _make_error(GraphPermanentError, "site without id", method="GET", url=site_api)
        if not library:
            drive = self._json("GET", site_api, self._api("GET", f"/sites/{quote(site_id, safe='')}/drive"))
            return str(drive["id"])
        url = self.api_url(f"/sites/{quote(site_id, safe='')}/drives")
        while url:
            body = self._json("GET", redact_url(url), self._api("GET", url))
            for drive in body.get("value") or []:
                if isinstance(drive, dict) and drive.get("name") == library:
                    return str(drive["id"])
            url = body.get("@odata.nextLink") or ""
        raise _make_error(
            GraphPermanentError,
            f"no document library named {library!r}",
            method="GET",
            url=redact_url(self.api_url(f"/sites/{site_id}/drives")),
        )
