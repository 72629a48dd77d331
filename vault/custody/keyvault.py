"""Azure Key Vault / Managed HSM custody over the REST API 7.4, on ``requests`` and msal.

Why not the Azure SDKs: ``azure-keyvault-keys`` with ``azure-identity`` pull in ``azure-core``,
``isodate``, ``typing-extensions`` and more, and cost far more to import than the five REST calls
used here (docs/dependencies.md measures both); msal and requests are already dependencies.

One Key Vault key per client and custody version, named by
:meth:`~vault.custody.keyvault_config.KeyVaultCustodyConfig.key_name`. ``S(c, n)`` is 32 random
bytes made here; the vault stores only ``wrapKey(S)`` and the key id (kid, with version), and
opening is ``unwrapKey``. Destroying deletes the key (``DELETE /keys/{name}``, every version) and
purges it (``DELETE /deletedkeys/{name}``); with purge protection on, or without the purge
permission, the key stays soft-deleted until its ``scheduledPurgeDate`` and the receipt says so,
with that date (docs/sla.md section 4, "what can still undo the shred").

:class:`KeyVaultClient` (REST plumbing):

* **Challenge authentication** (Key Vault's protocol, as the Azure SDKs implement it): the first
  request of a client object is sent without body and without token; Key Vault answers 401 with
  ``WWW-Authenticate: Bearer authorization="https://login.../<tenant>", resource="<resource>"``.
  We refuse a challenge naming another resource than the configured one (a token is requested
  only for ``<resource>/.default`` and sent only to the vault's own origin), and one naming another
  tenant than a configured tenant GUID. A later 401 refreshes the token once.
* **Retries**: 429 and 5xx (but 501 and 505) and connection errors, at most ``max_attempts`` tries;
  ``Retry-After`` (seconds) is honoured exactly, up to ``max_retry_after``; otherwise exponential
  back-off with full jitter. Redirects are never followed. ``sleep`` and the RNG are parameters.
* Errors: :class:`~vault.custody.base.CustodyUnavailable` (exit 9, transient),
  :class:`~vault.custody.base.CustodyRefused` (exit 9, a refusal), never carrying a token or a
  secret; the Key Vault error code and message are kept (at most 300 characters).
"""

from __future__ import annotations

import json
import logging
import math
import random as _random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from vault import crypto
from vault.clock import Clock, SystemClock, from_epoch, rfc3339, to_epoch
from vault.custody.base import (
    SECRET_LEN,
    Created,
    CustodyDestroyed,
    CustodyRef,
    CustodyRefused,
    CustodyUnavailable,
    Destroyed,
    b64url,
    b64url_decode,
    check_item,
)
from vault.custody.keyvault_config import KeyVaultCustodyConfig
from vault.errors import IntegrityFailure

log = logging.getLogger(__name__)

#: Key Vault data-plane API version used for every call (the keys API of 2023; 7.5 and 7.6 add
#: nothing this custodian uses)
API_VERSION = "7.4"
_NO_RETRY_5XX = (501, 505)
_MAX_MESSAGE = 300
_KID_PATH = re.compile(r"^/keys/([0-9A-Za-z-]{1,127})/([0-9a-fA-F]{32})$")
#: after a delete, Key Vault moves the key to the deleted state asynchronously; the purge is
#: retried (404 or 409 meanwhile) this many times with back-off
PURGE_ATTEMPTS = 8


class KeyVaultUnavailable(CustodyUnavailable):
    """Azure Key Vault is unreachable or throttling; nothing was changed, try again."""


class KeyVaultRefused(CustodyRefused):
    """Azure Key Vault refused the request."""


class _NotFound(Exception):
    """Internal: HTTP 404 from Key Vault (the caller knows what a missing key means)."""


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_challenge(header: str | None) -> dict[str, str] | None:
    """Parameters of a ``Bearer`` WWW-Authenticate challenge (lower-cased names), or None."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = {}
    for name, value in re.findall(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*"([^"]*)"', rest):
        params[name.lower()] = value
    if not params or not (params.get("authorization") or params.get("authorization_uri")):
        return None
    return params


class KeyVaultClient:
    """The keys API of one vault (thread-safe; one per process is enough)."""

    def __init__(
        self,
        vault_url: str,
        token_provider,
        *,
        resource: str,
        tenant_id: str = "",
        api_version: str = API_VERSION,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: _random.Random | None = None,
        session: requests.Session | None = None,
    ):
        parts = urlsplit(vault_url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("vault_url must be https://host")
        self.origin = f"https://{parts.netloc.lower()}"
        self.resource = resource.rstrip("/")
        self.tenant_id = tenant_id
        self.api_version = api_version
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._tokens = token_provider
        self._sleep = sleep
        self._rng = rng if rng is not None else _random.Random()  # noqa: S311 - back-off jitter, not a secret
        self._lock = threading.Lock()
        self._challenged = False
        #: the message of the last purge Key Vault refused with 403 (for the receipt)
        self.last_forbidden = ""
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no .netrc Authorization; the CA variables are read below
            session.mount("https://", HTTPAdapter(pool_connections=2, pool_maxsize=8, max_retries=0))
        self._session = session
        if verify is True:
            import os

            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.verify = verify

    def __repr__(self) -> str:
        return f"KeyVaultClient(origin={self.origin!r})"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # --- plumbing -----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            with self._lock:
                delay = self._rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))
        self._sleep(delay)

    def _error(self, cls, method: str, path: str, what: str, resp: requests.Response | None = None):
        parts = [f"Azure Key Vault {self.origin}: {method} {path}: {what}"]
        if resp is not None:
            parts.append(f"HTTP {resp.status_code}")
            try:
                err = resp.json().get("error")
            except (ValueError, AttributeError):
                err = None
            if isinstance(err, dict):
                code, message = err.get("code"), err.get("message")
                if isinstance(code, str) and code:
                    parts.append(code[:80])
                if isinstance(message, str) and message:
                    # Key Vault messages never echo the token; strip any Bearer value all the same
                    clean = re.sub(r"(?i)bearer\s+\S+", "Bearer [redacted]", " ".join(message.split()))
                    parts.append(clean[:_MAX_MESSAGE])
            rid = resp.headers.get("x-ms-request-id")
            if rid:
                parts.append(f"request-id {rid[:64]}")
        return cls(" - ".join(parts)[: _MAX_MESSAGE * 2])

    def _transport(self, method: str, path: str, *, body: dict | None, token: str | None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        else:
            headers["Content-Length"] = "0"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self._session.request(
            method,
            self._url(path),
            params={"api-version": self.api_version},
            data=data,
            headers=headers,
            timeout=self.timeout,
            allow_redirects=False,
            verify=self.verify,
        )

    def _attempts(self, method: str, path: str, *, body: dict | None, token: str | None):
        """One logical request with the retry policy; returns the first non-retryable answer."""
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._transport(method, path, body=body, token=token)
            except requests.exceptions.SSLError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise self._error(KeyVaultRefused, method, path, "TLS certificate not trusted") from None
                if attempt >= self.max_attempts:
                    raise self._error(KeyVaultUnavailable, method, path, "TLS failure") from None
                self._backoff(attempt, None)
                continue
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                if attempt >= self.max_attempts:
                    kind = "timed out" if isinstance(exc, requests.Timeout) else "unreachable"
                    raise self._error(KeyVaultUnavailable, method, path, kind) from None
                self._backoff(attempt, None)
                continue
            status = resp.status_code
            log.debug("Key Vault %s %s -> %d", method, path, status)
            if status == 429 or (status >= 500 and status not in _NO_RETRY_5XX):
                retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
                if attempt >= self.max_attempts or (
                    retry_after is not None and retry_after > self.max_retry_after
                ):
                    what = "throttled" if status == 429 else "temporarily unavailable"
                    raise self._error(KeyVaultUnavailable, method, path, what, resp)
                self._backoff(attempt, retry_after)
                continue
            return resp

    def _check_challenge(self, method: str, path: str, resp: requests.Response) -> None:
        params = parse_challenge(resp.headers.get("WWW-Authenticate"))
        if params is None:
            raise self._error(KeyVaultRefused, method, path, "401 without a Bearer challenge", resp)
        wanted = params.get("resource") or params.get("scope", "").removesuffix("/.default")
        if wanted.rstrip("/").lower() != self.resource.lower():
            raise self._error(
                KeyVaultRefused,
                method,
                path,
                f"the vault asks for a token for {wanted[:100]!r}, not {self.resource!r}: refusing "
                "(set the custody resource if that is right)",
            )
        authority = params.get("authorization") or params.get("authorization_uri", "")
        tenant = urlsplit(authority).path.strip("/").split("/")[0].lower()
        configured = self.tenant_id.lower()
        if _is_guid(tenant) and _is_guid(configured) and tenant != configured:
            raise self._error(
                KeyVaultRefused,
                method,
                path,
                f"the vault belongs to tenant {tenant}, not the configured tenant {configured}",
            )

    def _send(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        """Authenticated request (challenge first on the first call); the answer is returned for
        the caller to map, except retry exhaustion and a second 401, which raise."""
        if not self._challenged:
            # Key Vault's challenge protocol: no body and no token until the vault said which
            # resource and tenant it wants (the body may carry a secret to wrap)
            probe = self._attempts(method, path, body=None, token=None)
            if probe.status_code != 401:
                raise self._error(
                    KeyVaultRefused, method, path, "answered without asking for authentication", probe
                )
            self._check_challenge(method, path, probe)
            self._challenged = True
        resp = self._attempts(method, path, body=body, token=self._tokens.token())
        if resp.status_code == 401:
            self._check_challenge(method, path, resp)
            resp = self._attempts(method, path, body=body, token=self._tokens.token(force_refresh=True))
            if resp.status_code == 401:
                raise self._error(KeyVaultRefused, method, path, "access token rejected after refresh", resp)
        return resp

    def _json(self, method: str, path: str, resp: requests.Response) -> dict:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._error(KeyVaultUnavailable, method, path, "answer is not a JSON object", resp)
        return body

    def _call(self, method: str, path: str, body: dict | None = None, *, ok=(200,)) -> dict | None:
        resp = self._send(method, path, body)
        if resp.status_code in ok:
            return None if resp.status_code == 204 else self._json(method, path, resp)
        if resp.status_code == 404:
            raise _NotFound(path)
        raise self._error(KeyVaultRefused, method, path, "request refused", resp)

    # --- the keys API ------------------------------------------------------------------------------

    @staticmethod
    def _name(name: str) -> str:
        if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", name):
            raise ValueError("Key Vault key names are 1 to 127 of [0-9A-Za-z-]")
        return quote(name, safe="-")

    def get_key(self, name: str) -> dict | None:
        """The key's latest version (KeyBundle), None if there is no such key."""
        try:
            return self._call("GET", f"/keys/{self._name(name)}/")
        except _NotFound:
            return None

    def create_key(self, name: str, *, kty: str, key_size: int, tags: dict[str, str]) -> dict:
        body = {
            "kty": kty,
            "key_size": key_size,
            "key_ops": ["wrapKey", "unwrapKey"],
            "attributes": {"enabled": True},
            "tags": tags,
        }
        try:
            return self._call("POST", f"/keys/{self._name(name)}/create", body) or {}
        except _NotFound:
            raise self._error(KeyVaultRefused, "POST", f"/keys/{name}/create", "vault not found") from None

    def wrap_key(self, name: str, version: str, alg: str, value: bytes) -> tuple[str, bytes]:
        path = f"/keys/{self._name(name)}/{version}/wrapkey"
        try:
            out = self._call("POST", path, {"alg": alg, "value": b64url(value)})
        except _NotFound:
            raise CustodyDestroyed(f"Azure Key Vault key {name} no longer exists") from None
        return self._result(path, out)

    def unwrap_key(self, name: str, version: str, alg: str, value: bytes) -> bytes:
        path = f"/keys/{self._name(name)}/{version}/unwrapkey"
        resp = self._send("POST", path, {"alg": alg, "value": b64url(value)})
        if resp.status_code == 404:
            raise _NotFound(path)
        if resp.status_code == 400:
            # the service could not unwrap these bytes: they were not wrapped by this key version
            raise IntegrityFailure(f"integrity failure: Azure Key Vault could not unwrap with key {name}")
        if resp.status_code != 200:
            raise self._error(KeyVaultRefused, "POST", path, "request refused", resp)
        return self._result(path, self._json("POST", path, resp))[1]

    def _result(self, path: str, out: dict | None) -> tuple[str, bytes]:
        kid, value = (out or {}).get("kid"), (out or {}).get("value")
        try:
            return str(kid), b64url_decode(str(value or ""))
        except ValueError:
            raise self._error(KeyVaultUnavailable, "POST", path, "answer without a base64url value") from None

    def delete_key(self, name: str) -> dict | None:
        """DeletedKeyBundle, or None if there was no such (live) key."""
        try:
            return self._call("DELETE", f"/keys/{self._name(name)}")
        except _NotFound:
            return None

    def get_deleted_key(self, name: str) -> dict | None:
        try:
            return self._call("GET", f"/deletedkeys/{self._name(name)}")
        except _NotFound:
            return None

    def purge_deleted_key(self, name: str) -> str:
        """``"purged"``, ``"absent"`` (404: not, or not yet, in the deleted state), ``"busy"`` (409:
        the delete is still in progress) or ``"forbidden"`` (403: purge protection, or no
        ``keys/purge`` permission); raises on anything else."""
        path = f"/deletedkeys/{self._name(name)}"
        resp = self._send("DELETE", path)
        status = resp.status_code
        if status in (200, 204):
            return "purged"
        if status == 404:
            return "absent"
        if status == 409:
            return "busy"
        if status == 403:
            self.last_forbidden = self._error(KeyVaultRefused, "DELETE", path, "purge refused", resp).message
            return "forbidden"
        raise self._error(KeyVaultRefused, "DELETE", path, "request refused", resp)


def _is_guid(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))


class KeyVaultCustodian:
    """Custody secrets wrapped by per-client Key Vault keys (see the module docstring)."""

    kind = "azure-keyvault"

    def __init__(
        self,
        config: KeyVaultCustodyConfig,
        vault_id: bytes,
        *,
        client: KeyVaultClient | None = None,
        token_provider=None,
        clock: Clock | None = None,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: _random.Random | None = None,
    ):
        self.config = config.validate()
        self.vault_id = vault_id
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self._rng = rng if rng is not None else _random.Random()  # noqa: S311 - back-off jitter, not a secret
        if client is None:
            if token_provider is None:
                raise ValueError("KeyVaultCustodian needs a client or a token provider")
            client = KeyVaultClient(
                config.vault_url,
                token_provider,
                resource=config.effective_resource,
                tenant_id=config.tenant_id,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                max_attempts=config.max_attempts,
                verify=verify,
                sleep=sleep,
                rng=self._rng,
            )
        self.client = client

    def __repr__(self) -> str:
        return f"KeyVaultCustodian(vault_url={self.config.origin!r})"

    @property
    def location(self) -> str:
        return f"Azure Key Vault {self.config.origin}"

    def key_name(self, client_id: str, version: int) -> str:
        return self.config.key_name(self.vault_id, client_id, version)

    def key_url(self, name: str) -> str:
        return f"{self.config.origin}/keys/{name}"

    def describe(self) -> dict:
        c = self.config
        return {
            "kind": self.kind,
            "vault_url": c.origin,
            "service": c.effective_service,
            "resource": c.effective_resource,
            "key_type": c.effective_key_type,
            "key_size": c.effective_key_size,
            "wrap_algorithm": c.wrap_algorithm,
            "key_names": f"{c.key_prefix}-{self.vault_id.hex()[:8]}-<client id>-<custody version>",
            "tenant_id": c.tenant_id,
            "client_id": c.client_id,
            "credential": c.credential,
            "authority_host": c.authority_host,
            "api_version": self.client.api_version,
        }

    def close(self) -> None:
        self.client.close()

    # --- create and open -----------------------------------------------------------------------------

    def create(self, items: Sequence[tuple[str, int]]) -> list[Created]:
        """For each (client, version): the key (made if absent; its latest version reused after a
        crash), a fresh S wrapped by it."""
        out = []
        for client_id, version in items:
            check_item(client_id, version)
            name = self.key_name(client_id, version)
            bundle = self.client.get_key(name)
            if bundle is None or not self._usable(bundle):
                bundle = self.client.create_key(
                    name,
                    kty=self.config.effective_key_type,
                    key_size=self.config.effective_key_size,
                    tags={
                        "cvault": "custody",
                        "vault": self.vault_id.hex(),
                        "client": client_id,
                        "custody_version": str(version),
                    },
                )
            key_version = self._kid_parts(str((bundle.get("key") or {}).get("kid", "")), name)[1]
            secret = crypto.random_bytes(SECRET_LEN)
            kid, wrapped = self.client.wrap_key(name, key_version, self.config.wrap_algorithm, secret)
            self._kid_parts(kid, name)
            out.append(
                Created(secret, CustodyRef(client_id, version, crypto.key_fingerprint(secret), kid, wrapped))
            )
        return out

    @staticmethod
    def _usable(bundle: dict) -> bool:
        key, attrs = bundle.get("key") or {}, bundle.get("attributes") or {}
        ops = key.get("key_ops") or []
        return attrs.get("enabled", True) is True and "wrapKey" in ops and "unwrapKey" in ops

    def _kid_parts(self, kid: str, expected_name: str) -> tuple[str, str]:
        """(name, version) of a key id on this vault; anything else is refused (a vault.db row
        must never send an unwrap, or a token, to another key or host)."""
        parts = urlsplit(kid)
        m = _KID_PATH.match(parts.path)
        if f"https://{parts.netloc.lower()}" != self.config.origin or not m or m.group(1) != expected_name:
            raise IntegrityFailure(
                f"integrity failure: Key Vault key id {kid[:200]!r} is not custody key {expected_name} "
                f"of {self.config.origin}"
            )
        return m.group(1), m.group(2).lower()

    def open(self, ref: CustodyRef) -> bytes:
        check_item(ref.client_id, ref.version)
        name = self.key_name(ref.client_id, ref.version)
        if not ref.key_id or not ref.wrapped:
            raise IntegrityFailure(
                f"integrity failure: custody of client {ref.client_id} (version {ref.version}) has no "
                "Key Vault reference"
            )
        _, key_version = self._kid_parts(ref.key_id, name)
        try:
            secret = self.client.unwrap_key(name, key_version, self.config.wrap_algorithm, ref.wrapped)
        except _NotFound:
            raise CustodyDestroyed(
                f"custody key {self.key_url(name)} of client {ref.client_id} (version {ref.version}) no "
                "longer exists in Azure Key Vault (deleted or purged)"
            ) from None
        if len(secret) != SECRET_LEN or not crypto.constant_time_equal(
            crypto.key_fingerprint(secret), ref.fingerprint
        ):
            raise IntegrityFailure(
                f"integrity failure: custody secret of client {ref.client_id} (version {ref.version}) "
                "from Azure Key Vault does not match the vault"
            )
        return secret

    # --- destroy -------------------------------------------------------------------------------------

    def destroy(
        self, client_id: str, versions: Iterable[int], *, every_version: bool = False
    ) -> list[Destroyed]:
        """Delete and purge each version's key. ``every_version`` cannot discover versions the
        vault never recorded (Key Vault has no listing by name prefix): the vault records each
        version before creating its key, so the versions it passes are all there are."""
        receipts = []
        for version in sorted(set(versions)):
            check_item(client_id, version)
            receipts.append(self._destroy_one(client_id, version))
        return receipts

    def _destroy_one(self, client_id: str, version: int) -> Destroyed:
        name = self.key_name(client_id, version)
        url = self.key_url(name)
        now = to_epoch(self.clock.now())
        deleted = self.client.delete_key(name)
        already = deleted is None
        if deleted is None:
            deleted = self.client.get_deleted_key(name)
        if deleted is None:
            # neither live nor deleted: purged before (a repeated step), or never made
            return self._receipt(client_id, version, url, now, now, already=True)
        level = str((deleted.get("attributes") or {}).get("recoveryLevel") or "")
        scheduled = deleted.get("scheduledPurgeDate")
        scheduled = int(scheduled) if isinstance(scheduled, (int, float)) else None
        refusal = None
        if "Purgeable" in level:
            outcome = self._purge(name, just_deleted=not already)
            if outcome == "purged":
                self._wait_gone(name)
                return self._receipt(client_id, version, url, now, now, already=already)
            refusal = self.client.last_forbidden or "purge refused"
        return self._receipt(
            client_id,
            version,
            url,
            now,
            scheduled,
            already=already,
            soft_deleted=True,
            recovery_level=level,
            refusal=refusal,
        )

    def _purge(self, name: str, *, just_deleted: bool) -> str:
        """``"purged"`` or ``"forbidden"``. Right after a delete, Key Vault moves the key to the
        deleted state asynchronously (404 or 409 meanwhile): wait that out with bounded back-off."""
        for attempt in range(1, PURGE_ATTEMPTS + 1):
            outcome = self.client.purge_deleted_key(name)
            if outcome in ("purged", "forbidden"):
                return outcome
            if outcome == "absent" and not just_deleted:
                return "purged"  # it was in the deleted state a moment ago: purged meanwhile
            self._sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise KeyVaultUnavailable(
            f"Azure Key Vault {self.config.origin}: key {name} is still being deleted; try again"
        )

    def _wait_gone(self, name: str) -> None:
        """A purge is done when the deleted key is no longer listed (bounded wait)."""
        for attempt in range(1, PURGE_ATTEMPTS + 1):
            if self.client.get_deleted_key(name) is None:
                return
            self._sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
        raise KeyVaultUnavailable(
            f"Azure Key Vault {self.config.origin}: purge of key {name} has not completed; try again"
        )

    def _receipt(
        self,
        client_id: str,
        version: int,
        url: str,
        when: int,
        permanent: int | None,
        *,
        already: bool,
        soft_deleted: bool = False,
        recovery_level: str = "",
        refusal: str | None = None,
    ) -> Destroyed:
        stamp = rfc3339(from_epoch(when))
        name = url.rsplit("/", 1)[1]
        backups = [
            f"a backup of Key Vault key {name} (the Backup Key operation, 'az keyvault key backup') "
            f"taken before {stamp}: it can be restored into a key vault of the same subscription "
            "and geography"
        ]
        if self.config.effective_service == "managed-hsm":
            backups.append(f"a full backup of the Managed HSM {self.config.origin} taken before {stamp}")
        residual = []
        what = f"Azure Key Vault key {url}"
        if soft_deleted:
            until = rfc3339(from_epoch(permanent)) if permanent else "its scheduled purge date (unknown)"
            why = refusal or f"recovery level {recovery_level or 'unknown'}: purge protection"
            residual.append(
                f"Azure Key Vault key {url} is soft-deleted ({why}); anyone with the keys/recover "
                f"permission on {self.config.origin} can recover it until it is purged on {until}"
            )
            what += " (deleted; purged by the service at the scheduled purge date)"
        else:
            what += " (deleted and purged)"
        return Destroyed(
            client_id,
            version,
            what,
            when,
            permanent,
            already_absent=already,
            residual=tuple(residual + backups),
        )


def build_custodian(
    config: KeyVaultCustodyConfig,
    vault_id: bytes,
    *,
    token_cache=None,
    clock: Clock | None = None,
    verify: bool | str = True,
    sleep: Callable[[float], None] = time.sleep,
    environ=None,
    rules=None,
) -> KeyVaultCustodian:
    """A custodian with an msal app-only token provider for ``<resource>/.default`` (the same
    credential options as the OneDrive replica; ``token_cache`` is a sealed msal cache; ``rules``:
    the files its credential must never be read from, vault.backends.graph_auth.CredentialFileRules)."""
    from vault.backends.graph_auth import provider_from_config

    provider = provider_from_config(
        config.validate(),
        cache=token_cache,
        environ=environ,
        verify=verify,
        sleep=sleep,
        service="Azure Key Vault",
        rules=rules,
    )
    return KeyVaultCustodian(
        config, vault_id, token_provider=provider, clock=clock, verify=verify, sleep=sleep
    )
