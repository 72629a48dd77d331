"""A fake Azure Key Vault / Managed HSM keys API (REST 7.4) over real HTTPS on 127.0.0.1, tests only.

Shapes follow the published REST specification (azure-rest-api-specs,
``specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.4/keys.json`` and its examples):

* ``POST /keys/{name}/create`` (``kty``, ``key_size``, ``key_ops``, ``attributes``, ``tags``) ->
  KeyBundle ``{"key": {"kid", "kty", "key_ops", "n", "e"}, "attributes": {"enabled", "created",
  "updated", "recoveryLevel", "recoverableDays"}, "tags"}``; an existing name gets a new version; a
  name in the deleted state is refused (409 Conflict);
* ``GET /keys/{name}[/{version}]`` -> KeyBundle (latest version without a version);
* ``POST /keys/{name}/{version}/wrapkey`` and ``/unwrapkey`` (``{"alg", "value"}``, base64url) ->
  ``{"kid", "value"}``: RSA-OAEP-256, RSA-OAEP, RSA1_5 on RSA keys; A128KW/A192KW/A256KW (RFC 3394)
  on ``oct-HSM`` keys, which only a Managed HSM offers;
* ``DELETE /keys/{name}`` -> DeletedKeyBundle (``recoveryId``, ``deletedDate``,
  ``scheduledPurgeDate``); soft-delete is always on (as on every Key Vault since 2020);
* ``GET /deletedkeys/{name}``, ``DELETE /deletedkeys/{name}`` (purge: 204; with purge protection
  403 Forbidden, and the service purges at ``scheduledPurgeDate``), ``POST
  /deletedkeys/{name}/recover``;
* errors as ``{"error": {"code", "message"}}``; ``api-version`` required.

Authentication is Key Vault's challenge protocol: a request without a valid bearer token gets 401
with ``WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="<resource>"``. A
token is valid when the shared :class:`~tests.fakes.graph_server.TokenRegistry` issued it for the
scope ``<resource>/.default`` (the fake authority records each token's scope), so a token meant
for Microsoft Graph is refused here, as Key Vault refuses a wrong audience.

Test controls: :attr:`down` (``"refuse"`` resets every connection, ``"503"`` answers 503),
:meth:`throttle` (429 with ``Retry-After`` for the next N requests), :meth:`inject` (any status for
matching requests), :attr:`deletion_lag` (a deleted key is "being deleted" for that many further
requests: 404 on GET and 409 on purge, as the asynchronous delete of the real service),
:attr:`now` (the clock, for deletion and purge dates), :attr:`log` (method, path, whether an
Authorization header and a body came, status; never a value).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.graph_server import TokenRegistry
from tests.fakes.https import Drop, HTTPSService, QuietHandler, reset_connection

API_VERSIONS = ("7.4", "7.5", "7.6")
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_VERSION = re.compile(r"^[0-9a-f]{32}$")
_RSA_POOL: dict[int, list] = {}
_POOL_LOCK = threading.Lock()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rsa_key(size: int, index: int):
    """RSA keys are slow to make; the fake reuses a per-process pool (it is not a security boundary)."""
    with _POOL_LOCK:
        pool = _RSA_POOL.setdefault(size, [])
        while len(pool) <= index:
            pool.append(rsa.generate_private_key(public_exponent=65537, key_size=size))
        return pool[index]


@dataclass
class KeyVersion:
    version: str
    kty: str
    key_size: int
    key_ops: list[str]
    material: object  # RSA private key, or the AES key bytes of an oct-HSM key
    created: int
    updated: int
    enabled: bool = True


@dataclass
class StoredKey:
    name: str
    versions: list[KeyVersion] = field(default_factory=list)
    tags: dict = field(default_factory=dict)

    @property
    def latest(self) -> KeyVersion:
        return self.versions[-1]

    def find(self, version: str) -> KeyVersion | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass
class DeletedKey:
    key: StoredKey
    deleted_date: int
    scheduled_purge_date: int
    pending: int = 0  # requests left during which the delete is still "in progress"


@dataclass
class KVRequest:
    method: str
    path: str
    has_authorization: bool
    has_body: bool
    status: int = 0
    fault: str | None = None


@dataclass
class _Fault:
    status: int
    count: int
    retry_after: str | None = None
    method: str | None = None
    path_contains: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


class _Handler(QuietHandler):
    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def _dispatch(self):
        try:
            self.server.owner._handle(self)
        except Drop:
            self.close_connection = True


class KVError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FakeKeyVault:
    def __init__(
        self,
        ssl_ctx,
        tokens: TokenRegistry,
        *,
        tenant: str,
        authority_host: str,
        managed_hsm: bool = False,
        purge_protection: bool = False,
        retention_days: int = 90,
        deletion_lag: int = 0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = tokens
        self.tenant = tenant
        self.authority_host = authority_host.rstrip("/")
        self.managed_hsm = managed_hsm
        self.resource = "https://managedhsm.azure.net" if managed_hsm else "https://vault.azure.net"
        self.purge_protection = purge_protection
        self.retention_days = retention_days
        self.deletion_lag = deletion_lag
        self.now = now
        self.down: str | None = None
        self.keys: dict[str, StoredKey] = {}
        self.deleted: dict[str, DeletedKey] = {}
        #: names purged, by a purge call ("purge") or by the service at the scheduled date ("system")
        self.purged: list[tuple[str, str]] = []
        self.log: list[KVRequest] = []
        self._faults: list[_Fault] = []
        self._rsa_used = 0
        self._lock = threading.RLock()
        self.service = HTTPSService(_Handler, ssl_ctx, self, "keyvault")

    # --- lifecycle and controls -------------------------------------------------------------------

    @property
    def vault_url(self) -> str:
        return self.service.origin

    def start(self) -> FakeKeyVault:
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def throttle(self, count: int, retry_after: str | None = "1") -> None:
        """Answer the next ``count`` requests 429 Too Many Requests with ``Retry-After``."""
        self.inject(429, count, retry_after=retry_after)

    def inject(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        with self._lock:
            self._faults.append(_Fault(status, count, retry_after, method, path_contains))

    def requests(self, method: str | None = None, path_contains: str | None = None) -> list[KVRequest]:
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method)
                and (path_contains is None or path_contains in r.path)
            ]

    def challenge(self) -> str:
        return f'Bearer authorization="{self.authority_host}/{self.tenant}", resource="{self.resource}"'

    # --- HTTP -----------------------------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        body = h.read_body()
        auth = h.headers.get("Authorization")
        entry = KVRequest(h.command, split.path, auth is not None, bool(body))
        with self._lock:
            self.log.append(entry)
        if self.down == "refuse":
            entry.fault = "refuse"
            reset_connection(h)
        try:
            if self.down == "503":
                entry.fault = "503"
                raise KVError(503, "ServiceUnavailable", "The service is unavailable.")
            fault = self._take_fault(h.command, split.path)
            if fault is not None:
                entry.fault = str(fault.status)
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                if fault.status == 429:
                    raise KVError(
                        429,
                        "Throttled",
                        "Request was not processed because too many requests were received. "
                        "Reason: VaultRequestTypeLimitReached",
                        headers,
                    )
                raise KVError(fault.status, "InjectedFault", f"injected HTTP {fault.status}", headers)
            query = parse_qs(split.query)
            version = (query.get("api-version") or [""])[0]
            if version not in API_VERSIONS:
                raise KVError(
                    400, "BadParameter", f"The specified version ({version or 'none'}) is not recognized."
                )
            self._authenticate(auth)
            payload = None
            if body:
                try:
                    payload = json.loads(body)
                except ValueError:
                    raise KVError(400, "BadParameter", "The request body is not valid JSON.") from None
            with self._lock:
                self._system_purge()
                status, obj = self._route(h.command, split.path, payload)
        except KVError as exc:
            entry.status = exc.status
            headers = dict(exc.headers)
            if exc.status == 401:
                headers["WWW-Authenticate"] = self.challenge()
            h.send_bytes(
                exc.status,
                json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode(),
                headers,
            )
            return
        entry.status = status
        h.send_bytes(status, b"" if obj is None else json.dumps(obj).encode())

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.matches(method, path):
                    fault.count -= 1
                    return fault
        return None

    def _authenticate(self, auth: str | None) -> None:
        if not auth:
            raise KVError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not self.tokens.valid(token.strip()):
            raise KVError(401, "Unauthorized", "AKV10032: Invalid issuer or the token expired.")
        if self.tokens.scope_of(token.strip()) != self.resource + "/.default":
            raise KVError(401, "Unauthorized", f"AKV10022: Invalid audience. Expected {self.resource}.")

    # --- state ----------------------------------------------------------------------------------------

    def _system_purge(self) -> None:
        """The service purges soft-deleted keys whose scheduled purge date has passed."""
        now = self.now()
        for name in [n for n, d in self.deleted.items() if d.scheduled_purge_date <= now]:
            del self.deleted[name]
            self.purged.append((name, "system"))

    def _recovery_level(self) -> str:
        custom = "CustomizedRecoverable" if self.retention_days < 90 else "Recoverable"
        return custom if self.purge_protection else custom + "+Purgeable"

    def _kid(self, name: str, version: str) -> str:
        return f"{self.vault_url}/keys/{name}/{version}"

    def _bundle(self, key: StoredKey, kv: KeyVersion) -> dict:
        jwk = {"kid": self._kid(key.name, kv.version), "kty": kv.kty, "key_ops": list(kv.key_ops)}
        if kv.kty.startswith("RSA"):
            numbers = kv.material.public_key().public_numbers()
            jwk["n"] = _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
            jwk["e"] = _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
        return {
            "key": jwk,
            "attributes": {
                "enabled": kv.enabled,
                "created": kv.created,
                "updated": kv.updated,
                "recoveryLevel": self._recovery_level(),
                "recoverableDays": self.retention_days,
                "exportable": False,
            },
            "tags": dict(key.tags),
        }

    def _deleted_bundle(self, name: str, d: DeletedKey) -> dict:
        out = self._bundle(d.key, d.key.latest)
        out.update(
            {
                "recoveryId": f"{self.vault_url}/deletedkeys/{name}",
                "deletedDate": d.deleted_date,
                "scheduledPurgeDate": d.scheduled_purge_date,
            }
        )
        return out

    @staticmethod
    def _not_found(name: str) -> KVError:
        return KVError(
            404,
            "KeyNotFound",
            f"A key with (name/id) {name} was not found in this key vault. If you recently deleted "
            "this key you may be able to recover it using the correct recovery command.",
        )

    def _key(self, name: str) -> StoredKey:
        key = self.keys.get(name)
        if key is None:
            raise self._not_found(name)
        return key

    # --- routes ---------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, payload) -> tuple[int, dict | None]:
        parts = [p for p in path.split("/") if p] if path != "/" else []
        if len(parts) >= 2 and parts[0] in ("keys", "deletedkeys") and not _NAME.match(parts[1]):
            raise KVError(400, "BadParameter", "The key name is not valid: use 1 to 127 of [0-9a-zA-Z-].")
        if parts[:1] == ["keys"]:
            if len(parts) == 3 and parts[2] == "create" and method == "POST":
                return self._create(parts[1], payload or {})
            if method == "GET" and len(parts) in (2, 3):
                key = self._key(parts[1])
                kv = key.latest if len(parts) == 2 else key.find(parts[2])
                if kv is None:
                    raise self._not_found(parts[1])
                return 200, self._bundle(key, kv)
            if len(parts) == 2 and method == "DELETE":
                return self._delete(parts[1])
            if len(parts) == 4 and method == "POST" and parts[3] in ("wrapkey", "unwrapkey"):
                return self._wrap(parts[1], parts[2], parts[3] == "wrapkey", payload or {})
        if parts[:1] == ["deletedkeys"] and len(parts) >= 2:
            name = parts[1]
            if len(parts) == 2 and method == "GET":
                d = self._visible_deleted(name)
                return 200, self._deleted_bundle(name, d)
            if len(parts) == 2 and method == "DELETE":
                return self._purge(name)
            if len(parts) == 3 and parts[2] == "recover" and method == "POST":
                d = self._visible_deleted(name)
                del self.deleted[name]
                self.keys[name] = d.key
                return 200, self._bundle(d.key, d.key.latest)
        raise KVError(404, "NotFound", f"no such operation: {method} {path}")

    def _create(self, name: str, payload: dict) -> tuple[int, dict]:
        if name in self.deleted:
            raise KVError(
                409,
                "Conflict",
                f"Key {name} is currently in a deleted but recoverable state, and its name cannot be "
                "reused; in this state, the key can only be recovered or purged.",
            )
        kty = payload.get("kty")
        offered = ("RSA-HSM", "oct-HSM") if self.managed_hsm else ("RSA", "RSA-HSM")
        if kty not in offered:
            raise KVError(400, "BadParameter", f"Key type {kty!r} is not supported by this vault.")
        size = payload.get("key_size") or (256 if kty == "oct-HSM" else 2048)
        if kty == "oct-HSM":
            if size not in (128, 192, 256):
                raise KVError(400, "BadParameter", "oct-HSM key size must be 128, 192 or 256.")
            material: object = secrets.token_bytes(size // 8)
        else:
            if size not in (2048, 3072, 4096):
                raise KVError(400, "BadParameter", "RSA key size must be 2048, 3072 or 4096.")
            material = _rsa_key(size, self._rsa_used)
            self._rsa_used += 1
        ops = payload.get("key_ops") or ["encrypt", "decrypt", "wrapKey", "unwrapKey"]
        now = int(self.now())
        key = self.keys.setdefault(name, StoredKey(name))
        if isinstance(payload.get("tags"), dict):
            key.tags = {str(k): str(v) for k, v in payload["tags"].items()}
        enabled = (payload.get("attributes") or {}).get("enabled", True)
        kv = KeyVersion(secrets.token_hex(16), kty, size, list(ops), material, now, now, bool(enabled))
        key.versions.append(kv)
        return 200, self._bundle(key, kv)

    def _delete(self, name: str) -> tuple[int, dict]:
        key = self._key(name)
        now = int(self.now())
        d = DeletedKey(key, now, now + self.retention_days * 86400, pending=self.deletion_lag)
        del self.keys[name]
        self.deleted[name] = d
        return 200, self._deleted_bundle(name, d)

    def _visible_deleted(self, name: str) -> DeletedKey:
        d = self.deleted.get(name)
        if d is None:
            raise KVError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        if d.pending > 0:  # the asynchronous delete has not finished yet
            d.pending -= 1
            raise KVError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        return d

    def _purge(self, name: str) -> tuple[int, None]:
        d = self.deleted.get(name)
        if d is None:
            raise KVError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        if d.pending > 0:
            d.pending -= 1
            raise KVError(409, "Conflict", f"Key {name} is currently being deleted.")
        if self.purge_protection:
            raise KVError(
                403,
                "Forbidden",
                'Operation "purge" is not allowed because purge protection is enabled for this vault. '
                "Key Vault service will automatically purge it after the retention period has passed.",
            )
        del self.deleted[name]
        self.purged.append((name, "purge"))
        return 204, None

    def _wrap(self, name: str, version: str, wrap: bool, payload: dict) -> tuple[int, dict]:
        key = self._key(name)
        kv = key.find(version) if _VERSION.match(version) else None
        if kv is None:
            raise self._not_found(name)
        op = "wrapKey" if wrap else "unwrapKey"
        if op not in kv.key_ops:
            raise KVError(403, "Forbidden", f"Operation {op} is not permitted on this key.")
        if not kv.enabled:
            raise KVError(403, "Forbidden", "Operation is not allowed on a disabled key.")
        alg = payload.get("alg")
        try:
            value = _unb64(payload.get("value"))
        except (ValueError, TypeError):
            raise KVError(400, "BadParameter", "value must be base64url.") from None
        try:
            out = self._crypt(kv, alg, value, wrap)
        except ValueError:
            raise KVError(
                400, "BadParameter", f"{'Wrap' if wrap else 'Unwrap'} failed for algorithm {alg}."
            ) from None
        return 200, {"kid": self._kid(name, kv.version), "value": _b64(out)}

    @staticmethod
    def _crypt(kv: KeyVersion, alg: str, value: bytes, wrap: bool) -> bytes:
        if kv.kty.startswith("RSA"):
            pads = {
                "RSA-OAEP-256": lambda: padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
                "RSA-OAEP": lambda: padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),
                "RSA1_5": padding.PKCS1v15,
            }
            if alg not in pads:
                raise ValueError(alg)
            if wrap:
                return kv.material.public_key().encrypt(value, pads[alg]())
            return kv.material.decrypt(value, pads[alg]())
        sizes = {"A128KW": 16, "A192KW": 24, "A256KW": 32}
        if sizes.get(alg) != len(kv.material):
            raise ValueError(alg)
        if wrap:
            return keywrap.aes_key_wrap(kv.material, value)
        try:
            return keywrap.aes_key_unwrap(kv.material, value)
        except keywrap.InvalidUnwrap:
            raise ValueError("unwrap") from None
