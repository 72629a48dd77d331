"""A Microsoft Graph (OneDrive drive items) fake over real HTTPS on 127.0.0.1, for tests only.

Two ports, as on the real service: the *API* port (``/v1.0/drives/...``, bearer token required,
tokens issued by :class:`TokenRegistry` / the fake authority) and the *content* port serving the
pre-authenticated upload-session and download URLs, which answer 401 to any request carrying an
Authorization header (Graph docs: sending it there "may result in an HTTP 401").

Implemented (Graph v1.0 shapes): item metadata by path, PUT ``:/content`` (4 MiB limit),
GET ``:/content`` (302 to a download URL, or a direct 200 when ``direct_download``), children with
``@odata.nextLink`` paging (``page_size``), ``DELETE /items/{id}`` (to a recycle bin),
``POST /items/{id}/permanentDelete``, ``createUploadSession`` with the fragment rules (multiples of
320 KiB except the last, Content-Range checked, 416 on a wrong start), session status GET, cancel
DELETE, eTags/cTags and ``file.hashes.quickXorHash``; Graph error bodies.

Test controls: :meth:`FakeGraph.inject` (scripted faults), :meth:`FakeGraph.random_faults`
(probability with a seeded RNG), :attr:`FakeGraph.latency`, :attr:`FakeGraph.down`
(``"refuse"`` drops every connection, ``"503"`` answers 503), :attr:`FakeGraph.log` (every request:
method, path, port kind, header names, Content-Range, body length, status, fault).
"""

from __future__ import annotations

import datetime
import json
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.fakes.https import Drop, HTTPSService, QuietHandler, reset_connection
from vault.backends.quickxor import quickxorhash

FRAGMENT_UNIT = 320 * 1024
SIMPLE_LIMIT = 4 * 1024 * 1024
FAULT_KINDS = (
    "429",
    "503",
    "500",
    "502",
    "401",
    "403",
    "416",
    "expire_session",
    "reset",
    "reset_after",
    "drop_mid_body",
    "truncate_body",
    "corrupt",
)


class TokenRegistry:
    """Access tokens the fake API accepts; the fake authority issues them."""

    def __init__(self) -> None:
        self._valid: set[str] = set()
        self._scopes: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.issued: list[str] = []

    def issue(self, prefix: str = "fake-at-", scope: str | None = None) -> str:
        token = prefix + secrets.token_urlsafe(32)
        with self._lock:
            self._valid.add(token)
            self._scopes[token] = scope
            self.issued.append(token)
        return token

    def scope_of(self, token: str) -> str | None:
        """The scope the authority issued ``token`` for (its audience), None if not recorded."""
        with self._lock:
            return self._scopes.get(token)

    def revoke(self, token: str) -> None:
        with self._lock:
            self._valid.discard(token)

    def revoke_all(self) -> None:
        with self._lock:
            self._valid.clear()

    def valid(self, token: str) -> bool:
        with self._lock:
            return token in self._valid


@dataclass
class RequestRecord:
    method: str
    path: str
    port: str  # "api" or "content"
    headers: frozenset[str]
    has_authorization: bool
    content_range: str | None
    body_length: int
    status: int | None = None
    fault: str | None = None


@dataclass
class _Fault:
    kind: str
    retry_after: str | None = None
    port: str | None = None
    method: str | None = None
    path_contains: str | None = None

    def matches(self, port: str, method: str, path: str) -> bool:
        return (
            (self.port is None or self.port == port)
            and (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
        )


@dataclass
class Item:
    id: str
    name: str
    parent: str  # lower-case folder path, "" for the root
    folder: bool
    content: bytes = b""
    version: int = 1
    created: str = ""
    modified: str = ""


@dataclass
class Session:
    id: str
    secret: str
    path: str
    total: int | None = None
    received: list[bytes] = field(default_factory=list)
    next: int = 0
    corrupt: bool = False


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(code: str, message: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": _now(),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }
    ).encode()


class _Handler(QuietHandler):
    def do_GET(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def _dispatch(self):
        try:
            self.server.owner._handle(self, self.server.kind)
        except Drop:
            self.close_connection = True
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True


class FakeGraph:
    """Fake Graph service: ``base_url`` (API) and a content origin for pre-authenticated URLs."""

    def __init__(
        self,
        ssl_ctx,
        tokens: TokenRegistry | None = None,
        *,
        drive_id: str | None = None,
        page_size: int = 200,
        direct_download: bool = False,
    ) -> None:
        self.tokens = tokens or TokenRegistry()
        self.drive_id = drive_id or "b!" + secrets.token_urlsafe(24)
        self.page_size = page_size
        self.direct_download = direct_download
        self.latency = 0.0
        self.down: str | None = None
        #: echo the caller's Authorization header in API error messages (to test redaction)
        self.echo_token = False
        self.log: list[RequestRecord] = []
        self.fault_counts: Counter[str] = Counter()
        self.recycle_bin: list[Item] = []
        self._lock = threading.RLock()
        self._items: dict[str, Item] = {}  # lower-case path -> item (files and folders)
        self._by_id: dict[str, str] = {}
        self._sessions: dict[str, Session] = {}
        self._downloads: dict[str, tuple[str, bytes]] = {}
        self._script: list[_Fault] = []
        self._probability = 0.0
        self._random_kinds: tuple[str, ...] = ()
        self._random_ports: tuple[str, ...] = ("api", "content")
        self._retry_after: dict[str, str | None] = {}
        self._rng = random.Random(0)
        self.api = HTTPSService(_Handler, ssl_ctx, self, "api")
        self.content = HTTPSService(_Handler, ssl_ctx, self, "content")

    # -- lifecycle and controls ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.api.origin}/v1.0"

    def start(self) -> FakeGraph:
        self.api.start()
        self.content.start()
        return self

    def stop(self) -> None:
        self.api.stop()
        self.content.stop()

    def inject(
        self,
        kind: str,
        times: int = 1,
        *,
        retry_after: str | None = None,
        port: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with fault ``kind`` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(kind)
        with self._lock:
            self._script.extend(_Fault(kind, retry_after, port, method, path_contains) for _ in range(times))

    def random_faults(
        self,
        probability: float,
        kinds=("429", "503", "reset"),
        *,
        seed: int = 0,
        retry_after: dict[str, str | None] | None = None,
        ports=("api", "content"),
    ) -> None:
        with self._lock:
            self._probability = probability
            self._random_kinds = tuple(kinds)
            self._rng = random.Random(seed)
            self._retry_after = dict(retry_after or {})
            self._random_ports = tuple(ports)

    def clear_faults(self) -> None:
        with self._lock:
            self._script.clear()
            self._probability = 0.0

    def expire_sessions(self) -> None:
        """Forget every upload session (their URLs answer 404), as after expirationDateTime."""
        with self._lock:
            self._sessions.clear()

    @property
    def open_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- inspection ---------------------------------------------------------------------------

    def files(self) -> dict[str, bytes]:
        """Every stored file: path (as created) -> content."""
        with self._lock:
            out = {}
            for key, item in self._items.items():
                if not item.folder:
                    out[self._display_path(key)] = item.content
            return out

    def _display_path(self, key: str) -> str:
        item = self._items[key]
        parent = self._items.get(item.parent)
        prefix = self._display_path(item.parent) + "/" if parent is not None else ""
        return prefix + item.name

    def put_file(self, path: str, content: bytes) -> None:
        """Store a file directly (test setup, bypassing HTTP)."""
        with self._lock:
            self._store(path, content)

    # -- fault selection ----------------------------------------------------------------------

    def _pick_fault(self, port: str, method: str, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._script):
                if fault.matches(port, method, path):
                    return self._script.pop(i)
            if self._probability and port in self._random_ports and self._rng.random() < self._probability:
                kind = self._rng.choice(self._random_kinds)
                return _Fault(kind, self._retry_after.get(kind))
        return None

    # -- request handling ---------------------------------------------------------------------

    def _handle(self, h: _Handler, port: str) -> None:
        if self.latency:
            time.sleep(self.latency)
        split = urlsplit(h.path)
        query = parse_qs(split.query)
        record = RequestRecord(
            method=h.command,
            path=split.path,
            port=port,
            headers=frozenset(k.lower() for k in h.headers),
            has_authorization="authorization" in {k.lower() for k in h.headers},
            content_range=h.headers.get("Content-Range"),
            body_length=int(h.headers.get("Content-Length") or 0),
        )
        with self._lock:
            self.log.append(record)
        if self.down == "refuse":
            record.fault = "down"
            reset_connection(h)
        fault = self._pick_fault(port, h.command, split.path)
        if fault is not None:
            record.fault = fault.kind
            with self._lock:
                self.fault_counts[fault.kind] += 1
        if fault is not None and fault.kind == "drop_mid_body" and record.body_length > 1:
            h.rfile.read(record.body_length // 2)
            reset_connection(h)
        body = h.read_body()

        def send(status, payload=b"", headers=None, content_type="application/json"):
            record.status = status
            hdrs = {"request-id": str(uuid.uuid4())}
            hdrs.update(headers or {})
            h.send_bytes(status, payload, hdrs, content_type)

        if self.down == "503":
            return send(503, _error("serviceNotAvailable", "down"), {"Retry-After": "1"})
        if fault is not None:
            kind = fault.kind
            if kind in ("429", "503", "500", "502"):
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                code = {"429": "tooManyRequests", "503": "serviceNotAvailable"}.get(kind, "generalException")
                return send(int(kind), _error(code, f"injected {kind}"), headers)
            if kind == "401" and port == "api":
                return send(401, _error("InvalidAuthenticationToken", "Access token has expired."))
            if kind == "403":
                return send(403, _error("accessDenied", self._echo(h, "Access denied.")))
            if kind == "expire_session":
                self.expire_sessions()
            if kind == "416" and port == "content":
                m = re.match(r"^/up/([A-Za-z0-9_-]+)$", split.path)
                with self._lock:
                    session = self._sessions.get(m.group(1)) if m else None
                    nxt = session.next if session else 0
                return send(
                    416,
                    json.dumps(
                        {
                            "error": {"code": "invalidRange", "message": "injected 416"},
                            "nextExpectedRanges": [f"{nxt}-"],
                        }
                    ).encode(),
                )
            if kind == "reset":
                reset_connection(h)
        if port == "content":
            status, payload, headers, ctype = self._content(h, split.path, query, body, record)
        else:
            auth = h.headers.get("Authorization") or ""
            if not auth.startswith("Bearer ") or not self.tokens.valid(auth[7:]):
                status, payload, headers, ctype = (
                    401,
                    _error("InvalidAuthenticationToken", self._echo(h, "Access token validation failure.")),
                    {},
                    "application/json",
                )
            else:
                status, payload, headers, ctype = self._api(h, split.path, query, body, fault)
                if status >= 400 and self.echo_token:
                    obj = json.loads(payload)
                    obj["error"]["message"] = self._echo(h, obj["error"]["message"])
                    payload = json.dumps(obj).encode()
        if fault is not None and fault.kind == "reset_after":
            reset_connection(h)
        if fault is not None and fault.kind == "truncate_body" and len(payload) > 1:
            record.status = status
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload[: len(payload) // 2])
            reset_connection(h)
        send(status, payload, headers, ctype)

    def _echo(self, h, message: str) -> str:
        if self.echo_token:
            sent = h.headers.get("Authorization") or ""
            return f"{message} You sent: {sent}; token={sent.removeprefix('Bearer ')}"
        return message

    # -- API port -----------------------------------------------------------------------------

    _ROUTES = [
        ("GET", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)$"), "_drive"),
        ("GET", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/root/children$"), "_children_root"),
        ("GET", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/root:/(?P<p>.+?):/children$"), "_children"),
        ("GET", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/root:/(?P<p>.+?):/content$"), "_get_content"),
        ("PUT", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/root:/(?P<p>.+?):/content$"), "_put_content"),
        (
            "POST",
            re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/root:/(?P<p>.+?):/createUploadSession$"),
            "_create_session",
        ),
        ("GET", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/root:/(?P<p>.+?):?$"), "_meta"),
        ("GET", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/items/(?P<i>[^/]+)$"), "_meta_by_id"),
        ("DELETE", re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/items/(?P<i>[^/]+)$"), "_recycle"),
        (
            "POST",
            re.compile(r"^/v1\.0/drives/(?P<d>[^/]+)/items/(?P<i>[^/]+)/permanentDelete$"),
            "_permanent_delete",
        ),
    ]

    def _api(self, h, path, query, body, fault):
        for method, pattern, name in self._ROUTES:
            m = pattern.match(path)
            if m and method == h.command:
                args = {k: unquote(v) for k, v in m.groupdict().items()}
                if args.pop("d") != self.drive_id:
                    return self._json(404, None, error=("itemNotFound", "The drive cannot be found."))
                return getattr(self, name)(query=query, body=body, fault=fault, **args)
        return self._json(400, None, error=("invalidRequest", "Invalid request"))

    @staticmethod
    def _json(status, obj, headers=None, error=None):
        payload = _error(*error) if error else (json.dumps(obj).encode() if obj is not None else b"")
        return status, payload, headers or {}, "application/json"

    def _item_json(self, key: str) -> dict:
        item = self._items[key]
        parent_id = self._items[item.parent].id if item.parent in self._items else "root"
        out = {
            "id": item.id,
            "name": item.name,
            "eTag": f'"{{{item.id}}},{item.version}"',
            "cTag": f'"c:{{{item.id}}},{item.version}"',
            "createdDateTime": item.created,
            "lastModifiedDateTime": item.modified,
            "parentReference": {
                "driveId": self.drive_id,
                "driveType": "business",
                "id": parent_id,
                "path": "/drive/root:"
                + ("/" + self._display_path(item.parent) if item.parent in self._items else ""),
            },
        }
        if item.folder:
            out["folder"] = {"childCount": sum(1 for i in self._items.values() if i.parent == key)}
            out["size"] = 0
        else:
            out["size"] = len(item.content)
            out["file"] = {
                "mimeType": "application/octet-stream",
                "hashes": {"quickXorHash": quickxorhash(item.content)},
            }
        return out

    def _ensure_folder(self, parts: list[str]) -> str:
        key = ""
        for part in parts:
            parent = key
            key = f"{key}/{part.lower()}" if key else part.lower()
            if key not in self._items:
                item = Item(
                    id=secrets.token_hex(8).upper(),
                    name=part,
                    parent=parent,
                    folder=True,
                    created=_now(),
                    modified=_now(),
                )
                self._items[key] = item
                self._by_id[item.id] = key
            elif not self._items[key].folder:
                raise ValueError("a file is in the way")
        return key

    def _store(self, path: str, content: bytes) -> str:
        parts = [p for p in path.split("/") if p]
        parent = self._ensure_folder(parts[:-1])
        key = "/".join(p.lower() for p in parts)
        existing = self._items.get(key)
        if existing is not None:
            existing.content = content
            existing.version += 1
            existing.modified = _now()
        else:
            item = Item(
                id=secrets.token_hex(8).upper(),
                name=parts[-1],
                parent=parent,
                folder=False,
                content=content,
                created=_now(),
                modified=_now(),
            )
            self._items[key] = item
            self._by_id[item.id] = key
        return key

    @staticmethod
    def _key(path: str) -> str:
        return "/".join(p.lower() for p in path.split("/") if p)

    def _drive(self, **_):
        return self._json(200, {"id": self.drive_id, "driveType": "business", "name": "Documents"})

    def _meta(self, p, **_):
        with self._lock:
            key = self._key(p)
            if key not in self._items:
                return self._json(404, None, error=("itemNotFound", "The resource could not be found."))
            return self._json(200, self._item_json(key))

    def _meta_by_id(self, i, **_):
        with self._lock:
            key = self._by_id.get(i)
            if key is None or key not in self._items:
                return self._json(404, None, error=("itemNotFound", "The resource could not be found."))
            return self._json(200, self._item_json(key))

    def _children_root(self, query, **_):
        return self._list_children("", query, "root/children")

    def _children(self, p, query, **_):
        key = self._key(p)
        with self._lock:
            if key not in self._items or not self._items[key].folder:
                return self._json(404, None, error=("itemNotFound", "The resource could not be found."))
        return self._list_children(key, query, f"root:/{quote(p)}:/children")

    def _list_children(self, key, query, route):
        top = min(int((query.get("$top") or [self.page_size])[0]), self.page_size)
        skip = int((query.get("$skiptoken") or ["0"])[0])
        with self._lock:
            keys = sorted(k for k, item in self._items.items() if item.parent == key)
            page = [self._item_json(k) for k in keys[skip : skip + top]]
        out = {"value": page}
        if skip + top < len(keys):
            sel = (query.get("$select") or [""])[0]
            out["@odata.nextLink"] = (
                f"{self.base_url}/drives/{quote(self.drive_id, safe='')}/{route}"
                f"?$top={top}&$skiptoken={skip + top}" + (f"&$select={sel}" if sel else "")
            )
        return self._json(200, out)

    def _put_content(self, p, body, fault, **_):
        if len(body) > SIMPLE_LIMIT:
            return self._json(413, None, error=("requestTooLarge", "Use an upload session above 4 MB."))
        if fault is not None and fault.kind == "corrupt" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        with self._lock:
            existed = self._key(p) in self._items
            key = self._store(p, body)
            return self._json(200 if existed else 201, self._item_json(key))

    def _get_content(self, p, **_):
        with self._lock:
            key = self._key(p)
            item = self._items.get(key)
            if item is None or item.folder:
                return self._json(404, None, error=("itemNotFound", "The resource could not be found."))
            if self.direct_download:
                return 200, item.content, {}, "application/octet-stream"
            dl = secrets.token_urlsafe(16)
            self._downloads[dl] = (secrets.token_urlsafe(16), item.content)
            url = f"{self.content.origin}/dl/{dl}?tempauth={self._downloads[dl][0]}"
            return 302, b"", {"Location": url}, "text/plain"

    def _create_session(self, p, body, fault, **_):
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            return self._json(400, None, error=("invalidRequest", "bad JSON"))
        behaviour = (spec.get("item") or {}).get("@microsoft.graph.conflictBehavior") or "fail"
        with self._lock:
            if behaviour == "fail" and self._key(p) in self._items:
                return self._json(409, None, error=("nameAlreadyExists", "The item already exists."))
            sid = secrets.token_urlsafe(12)
            session = Session(sid, secrets.token_urlsafe(24), p)
            session.corrupt = fault is not None and fault.kind == "corrupt"
            self._sessions[sid] = session
        return self._json(
            200,
            {
                "uploadUrl": f"{self.content.origin}/up/{sid}?tempauth={session.secret}",
                "expirationDateTime": _now(),
                "nextExpectedRanges": ["0-"],
            },
        )

    # -- content port (pre-authenticated URLs) ------------------------------------------------

    def _content(self, h, path, query, body, record):
        if record.has_authorization:
            return self._json(
                401, None, error=("unauthenticated", "Pre-authenticated URLs must not carry Authorization.")
            )
        tempauth = (query.get("tempauth") or [""])[0]
        m = re.match(r"^/(up|dl)/([A-Za-z0-9_-]+)$", path)
        if not m:
            return self._json(404, None, error=("itemNotFound", "no such URL"))
        kind, ident = m.groups()
        if kind == "dl":
            with self._lock:
                entry = self._downloads.get(ident)
            if entry is None or entry[0] != tempauth or h.command != "GET":
                return self._json(404, None, error=("itemNotFound", "no such download"))
            return 200, entry[1], {}, "application/octet-stream"
        with self._lock:
            session = self._sessions.get(ident)
            if session is None or session.secret != tempauth:
                return self._json(404, None, error=("itemNotFound", "The upload session was not found."))
            if h.command == "GET":
                return self._json(
                    200, {"expirationDateTime": _now(), "nextExpectedRanges": [f"{session.next}-"]}
                )
            if h.command == "DELETE":
                del self._sessions[ident]
                return self._json(204, None)
            if h.command != "PUT":
                return self._json(405, None, error=("invalidRequest", "method"))
            m = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", record.content_range or "")
            if not m:
                return self._json(400, None, error=("invalidRequest", "Content-Range required"))
            start, end, total = (int(x) for x in m.groups())
            length = end - start + 1
            if length != len(body) or end >= total or length <= 0:
                return self._json(400, None, error=("invalidRequest", "Content-Range does not match body"))
            if session.total is None:
                session.total = total
            elif session.total != total:
                return self._json(400, None, error=("invalidRequest", "total size changed"))
            if start != session.next:
                return self._json(
                    416,
                    {
                        "error": {
                            "code": "invalidRange",
                            "message": "The uploaded fragment overlaps or skips data.",
                        },
                        "nextExpectedRanges": [f"{session.next}-"],
                    },
                )
            last = end == total - 1
            if not last and length % FRAGMENT_UNIT:
                return self._json(
                    400, None, error=("invalidRequest", "Fragment size must be a multiple of 320 KiB.")
                )
            if length > 60 * 1024 * 1024:
                return self._json(413, None, error=("requestTooLarge", "Fragment above 60 MiB."))
            session.received.append(body)
            session.next = end + 1
            if not last:
                return self._json(
                    202, {"expirationDateTime": _now(), "nextExpectedRanges": [f"{session.next}-"]}
                )
            content = b"".join(session.received)
            if session.corrupt and content:
                content = bytes([content[0] ^ 0xFF]) + content[1:]
            existed = self._key(session.path) in self._items
            key = self._store(session.path, content)
            del self._sessions[ident]
            return self._json(200 if existed else 201, self._item_json(key))

    # -- deletes ------------------------------------------------------------------------------

    def _remove(self, key: str) -> Item:
        item = self._items.pop(key)
        self._by_id.pop(item.id, None)
        for child in [k for k, i in self._items.items() if i.parent == key]:
            self._remove(child)
        return item

    def _recycle(self, i, **_):
        with self._lock:
            key = self._by_id.get(i)
            if key is None:
                return self._json(404, None, error=("itemNotFound", "The resource could not be found."))
            self.recycle_bin.append(self._remove(key))
            return self._json(204, None)

    def _permanent_delete(self, i, **_):
        with self._lock:
            key = self._by_id.get(i)
            if key is None:
                return self._json(404, None, error=("itemNotFound", "The resource could not be found."))
            self._remove(key)
            return self._json(204, None)
