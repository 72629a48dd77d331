"""Microsoft Graph access tokens through msal (docs/spec.md §8): app-only and device-code providers.

Both providers implement :class:`vault.backends.graph.TokenProvider` (``token(force_refresh=)``).
``msal`` (about 100 ms to import, and it pulls in ``requests``) is imported inside the methods that
need it, never at module import, so the everyday CLI path that never talks to Graph does not pay
for it.

* :class:`ClientCredentialsProvider`: ``ConfidentialClientApplication.acquire_token_for_client``
  with scope ``https://graph.microsoft.com/.default`` (the national-cloud Graph host for others),
  with a client secret (the caller reads it from a file or an environment variable) or a
  certificate (private key PEM plus SHA-1 thumbprint, or the certificate in the same PEM).
* :class:`DeviceCodeProvider`: delegated sign-in with ``PublicClientApplication`` device flow. The
  library never prints: the sign-in instruction goes to the ``prompt`` callback.

The msal ``SerializableTokenCache`` is persisted *sealed* (:class:`SealedTokenCache`): the vault
passes ``seal``/``unseal`` callables built on its ``token-cache-seal`` purpose key; the file is
written 0600, atomically, and only when msal says its state changed. A cache that does not unseal
(tampered, or sealed under another vault) is discarded: it only holds tokens that can be fetched
again.

Failures raise :class:`TokenAcquisitionError` (a permanent backend error, never carrying the
secret, the assertion or a token) or :class:`~vault.errors.TransientBackendError` when the
authority could not be reached.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vault.errors import (
    CryptoError,
    IntegrityFailure,
    PermanentBackendError,
    TransientBackendError,
)

GRAPH_DEFAULT_SCOPES = ("https://graph.microsoft.com/.default",)
DELEGATED_SCOPES = ("https://graph.microsoft.com/Files.ReadWrite.All",)
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


class TokenAcquisitionError(PermanentBackendError):
    """could not get a Microsoft Graph access token."""

    code = "backend_authentication_failed"


def _describe(result: dict) -> str:
    """One line from an msal error dict: the error code and the first sentence of the description
    (Entra descriptions end with trace and correlation ids; they never contain the secret)."""
    error = str(result.get("error") or "unknown_error")[:60]
    description = " ".join(str(result.get("error_description") or "").split())
    first = description.split(". ")[0][:200]
    return f"{error}: {first}" if first else error


def _resolve_verify(verify: bool | str) -> bool | str:
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


def _http_client(verify: bool | str, timeout):
    """The requests session msal uses. An explicit ``verify`` wins over the environment: requests
    otherwise lets REQUESTS_CA_BUNDLE override a session's own ``verify`` (psf/requests#3829).
    Proxy variables are still honoured; one retry on a broken connection, like msal's own default."""
    import requests

    class _Session(requests.Session):
        def request(self, method, url, *args, **kwargs):
            kwargs.setdefault("timeout", timeout)  # msal passes no timeout
            return super().request(method, url, *args, **kwargs)

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            settings["verify"] = self.verify
            return settings

    session = _Session()
    session.verify = verify
    session.mount("https://", requests.adapters.HTTPAdapter(max_retries=1))
    return session


class SealedTokenCache:
    """An msal ``SerializableTokenCache`` stored sealed at ``path`` (0600, atomic replace)."""

    def __init__(self, path: Path | str, seal: Callable[[bytes], bytes], unseal: Callable[[bytes], bytes]):
        self.path = Path(path)
        self._seal = seal
        self._unseal = unseal
        self._cache = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SealedTokenCache(path={str(self.path)!r})"

    @property
    def cache(self):
        """The msal cache, loaded (unsealed) on first use."""
        with self._lock:
            if self._cache is None:
                import msal

                cache = msal.SerializableTokenCache()
                try:
                    sealed = self.path.read_bytes()
                except FileNotFoundError:
                    sealed = None
                except OSError as exc:
                    raise PermanentBackendError(
                        f"token cache {self.path}: {exc.strerror or 'unreadable'}"
                    ) from None
                if sealed:
                    try:
                        cache.deserialize(self._unseal(sealed).decode("utf-8"))
                    except (CryptoError, IntegrityFailure, UnicodeDecodeError, ValueError):
                        cache = msal.SerializableTokenCache()  # unreadable cache: start empty
                self._cache = cache
            return self._cache

    def save_if_changed(self) -> bool:
        """Write the cache if msal changed it; True if written."""
        cache = self.cache
        with self._lock:
            if not cache.has_state_changed:
                return False
            blob = self._seal(cache.serialize().encode("utf-8"))
            self._write_atomic(blob)
            cache.has_state_changed = False
            return True

    def _write_atomic(self, blob: bytes) -> None:
        folder = self.path.parent
        tmp = folder / f".{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise PermanentBackendError(
                f"token cache {self.path}: write failed: {exc.strerror or exc}"
            ) from None


class _MsalProvider:
    """Shared plumbing: lazy msal app, one lock, cache persistence, error mapping."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        *,
        authority_host: str,
        scopes,
        cache: SealedTokenCache | None,
        instance_discovery: bool,
        verify: bool | str,
        timeout: float | tuple[float, float],
        service: str = "Microsoft Graph",
    ):
        self.service = service  # named in error messages: the Graph replica, or Key Vault custody
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self.scopes = list(scopes)
        self._sealed = cache
        self._instance_discovery = instance_discovery
        self._verify = verify
        self._timeout = timeout
        self._app: Any = None  # the msal application, built on first use
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(authority={self.authority!r}, client_id={self.client_id!r})"

    def _msal_cache(self):
        import msal

        return self._sealed.cache if self._sealed is not None else msal.SerializableTokenCache()

    def _kwargs(self) -> dict:
        return dict(
            authority=self.authority,
            token_cache=self._msal_cache(),
            http_client=_http_client(_resolve_verify(self._verify), self._timeout),
            instance_discovery=False if not self._instance_discovery else None,
        )

    def _call(self, fn: Callable[[], dict | None]) -> dict | None:
        """Run an msal call, turning network failures and msal's ValueErrors into backend errors."""
        import requests

        try:
            return fn()
        except (requests.ConnectionError, requests.Timeout) as exc:
            kind = "timed out" if isinstance(exc, requests.Timeout) else "unreachable"
            raise TransientBackendError(f"Entra ID authority {self.authority} {kind}") from None
        except ValueError as exc:  # msal: authority discovery failed, bad credential format
            first = " ".join(str(exc).split())[:200]
            raise TokenAcquisitionError(
                f"could not get an access token for {self.service} from {self.authority}: {first}"
            ) from None

    def _finish(self, result: dict | None) -> str:
        if self._sealed is not None:
            self._sealed.save_if_changed()
        if not result or "access_token" not in result:
            raise TokenAcquisitionError(
                f"could not get an access token for {self.service} from {self.authority}: "
                f"{_describe(result or {})}"
            )
        return result["access_token"]


class ClientCredentialsProvider(_MsalProvider):
    """App-only tokens (client credentials grant) for the Graph ``.default`` scope."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        private_key_pem: str | None = None,
        certificate_thumbprint: str | None = None,
        public_certificate_pem: str | None = None,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        scopes=GRAPH_DEFAULT_SCOPES,
        cache: SealedTokenCache | None = None,
        instance_discovery: bool = True,
        verify: bool | str = True,
        timeout: float | tuple[float, float] = (10.0, 30.0),
        service: str = "Microsoft Graph",
    ):
        super().__init__(
            tenant_id,
            client_id,
            authority_host=authority_host,
            scopes=scopes,
            cache=cache,
            instance_discovery=instance_discovery,
            verify=verify,
            timeout=timeout,
            service=service,
        )
        if bool(client_secret) == bool(private_key_pem):
            raise ValueError("give exactly one of client_secret or private_key_pem")
        if private_key_pem and not (certificate_thumbprint or public_certificate_pem):
            raise ValueError("a certificate credential needs the thumbprint or the public certificate")
        self._secret = client_secret
        self._key_pem = private_key_pem
        self._thumbprint = certificate_thumbprint
        self._cert_pem = public_certificate_pem

    def _credential(self):
        if self._secret:
            return self._secret
        cred = {"private_key": self._key_pem}
        if self._thumbprint:
            cred["thumbprint"] = self._thumbprint  # SHA-1: msal signs the assertion with RS256
        else:
            cred["public_certificate"] = self._cert_pem  # msal derives SHA-256 thumbprint, PS256
        return cred

    def _application(self):
        if self._app is None:
            import msal

            self._app = self._call(
                lambda: msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._credential(), **self._kwargs()
                )
            )
        return self._app

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            app = self._application()
            if force_refresh:
                # acquire_token_for_client reads the cache first (msal >= 1.23); drop our cached
                # access tokens so a token Graph just rejected is not handed out again.
                cache = app.token_cache
                for at in list(
                    cache.search(cache.CredentialType.ACCESS_TOKEN, query={"client_id": self.client_id})
                ):
                    cache.remove_at(at)
            return self._finish(self._call(lambda: app.acquire_token_for_client(scopes=self.scopes)))


class DeviceCodeProvider(_MsalProvider):
    """Delegated tokens: silent from the (sealed) cache, else the device-code flow.

    ``prompt(message)`` receives Entra's instruction ("To sign in, use a web browser to open ...");
    with ``prompt=None`` a missing sign-in raises :class:`TokenAcquisitionError` instead of
    blocking (a service has nobody to show the code to). Polling waits with the injectable
    ``sleep`` for the ``interval`` Entra asks, until the code's ``expires_in`` runs out.
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        *,
        prompt: Callable[[str], None] | None = None,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        scopes=DELEGATED_SCOPES,
        cache: SealedTokenCache | None = None,
        instance_discovery: bool = True,
        verify: bool | str = True,
        timeout: float | tuple[float, float] = (10.0, 30.0),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        service: str = "Microsoft Graph",
    ):
        super().__init__(
            tenant_id,
            client_id,
            authority_host=authority_host,
            scopes=scopes,
            cache=cache,
            instance_discovery=instance_discovery,
            verify=verify,
            timeout=timeout,
            service=service,
        )
        self._prompt = prompt
        self._sleep = sleep
        self._clock = clock

    def _application(self):
        if self._app is None:
            import msal

            self._app = self._call(lambda: msal.PublicClientApplication(self.client_id, **self._kwargs()))
        return self._app

    def signed_in(self) -> bool:
        with self._lock:
            return bool(self._application().get_accounts())

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            app = self._application()
            accounts = app.get_accounts()
            if accounts:
                result = self._call(
                    lambda: app.acquire_token_silent(
                        self.scopes, account=accounts[0], force_refresh=force_refresh
                    )
                )
                if result and "access_token" in result:
                    return self._finish(result)
            return self._finish(self._device_flow(app))

    def sign_in(self) -> str:
        """Run the device-code flow now (``cvault sync login``), whatever the cache holds."""
        with self._lock:
            return self._finish(self._device_flow(self._application()))

    def _device_flow(self, app) -> dict:
        if self._prompt is None:
            raise TokenAcquisitionError("Microsoft Graph sign-in needed: run the device-code login first")
        flow = self._call(lambda: app.initiate_device_flow(scopes=self.scopes))
        if not flow or "user_code" not in flow:
            raise TokenAcquisitionError(
                f"could not start device-code sign-in at {self.authority}: {_describe(flow or {})}"
            )
        self._prompt(str(flow.get("message") or flow.get("verification_uri")))
        interval = max(1, int(flow.get("interval", 5)))
        deadline = self._clock() + int(flow.get("expires_in", 900))
        # Bound: one poll per interval until the code expires (900 s / 5 s = 180 polls at most).
        for _ in range(int(flow.get("expires_in", 900)) // interval + 2):
            # exit_condition=True: msal polls once and returns; we do the waiting (injectable sleep).
            result = self._call(lambda: app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True))
            if result and "access_token" in result:
                return result
            error = (result or {}).get("error")
            if error not in ("authorization_pending", "slow_down"):
                return result or {}
            if error == "slow_down":
                interval += 5  # RFC 8628 3.5
            if self._clock() >= deadline:
                break
            self._sleep(interval)
        raise TokenAcquisitionError("device-code sign-in timed out")


#: the Microsoft Entra ID token hosts a credential is sent to: public, US Government, China (msal's
#: ``AzureAuthorityHosts``; learn.microsoft.com/graph/deployments). Any other host only if this
#: host's own configuration allows it (:data:`ENV_ALLOWED_HOSTS`), never because the vault says so
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)
#: the Microsoft Graph hosts an access token is sent to: global, US Gov L4 and L5 (DoD), China
MICROSOFT_GRAPH_HOSTS = frozenset(
    {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
)
#: the environment variable (of the host running cvault, outside the vault) naming further
#: ``https://host[:port]`` origins a configuration may use as its authority or Graph endpoint,
#: separated by commas or spaces (a private test tenant, a proxy)
ENV_ALLOWED_HOSTS = "CVAULT_ALLOWED_HOSTS"


def _safe_url_text(url: str) -> bool:
    """No backslash, whitespace or control character anywhere (review6 R6-7): the URL parsers
    disagree on them (urllib3 ends the authority at a backslash, urlsplit does not)."""
    return not any(ch == "\\" or ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in url)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` (port left out when 443) of ``url``, or "" (never allowed) when
    the URL has userinfo, a backslash, whitespace or a control character, or when urlsplit and
    urllib3's ``parse_url`` (the parser requests and msal send with) disagree on its scheme,
    host or port (review6 R6-7: ``https://evil.example\\@login.microsoftonline.com`` is
    urlsplit's Microsoft host but urllib3's evil.example)."""
    from urllib.parse import urlsplit

    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if not isinstance(url, str) or not _safe_url_text(url):
        return ""
    try:
        parts = urlsplit(url)
        port = parts.port
        sent = parse_url(url)
    except (ValueError, LocationParseError):
        return ""
    host = (parts.hostname or "").lower()
    if "@" in parts.netloc or sent.auth is not None or not host:
        return ""
    if (
        (sent.scheme or "").lower() != parts.scheme.lower()
        or (sent.host or "").lower().strip("[]") != host
        or sent.port != port
    ):
        return ""
    return f"{parts.scheme.lower()}://{host}" + ("" if port in (None, 443) else f":{port}")


def endpoint_allowed(url: str, pinned: frozenset[str], environ=None) -> bool | None:
    """Whether ``url`` may be sent a credential or token: None when it is one of the ``pinned``
    Microsoft hosts (https, port 443), True when this host's :data:`ENV_ALLOWED_HOSTS` lists its
    origin, False otherwise (review4 R4-4: the endpoints are never taken from the vault alone)."""
    environ = os.environ if environ is None else environ
    origin = _origin(url)
    if not origin:
        return False
    if origin.startswith("https://") and origin[len("https://") :] in pinned:
        return None
    allowed = {_origin(o) for o in re.split(r"[\s,]+", environ.get(ENV_ALLOWED_HOSTS, "")) if o}
    allowed.discard("")
    return origin in allowed


def require_endpoint(url: str, what: str, pinned: frozenset[str], environ=None) -> bool:
    """:func:`endpoint_allowed` or PermanentBackendError (one line naming the origin and the
    variable). Returns whether the host's own allowance (not the pin) let it through."""
    found = endpoint_allowed(url, pinned, environ)
    if found is False:
        origin = _origin(url)
        if not origin:  # never named: its userinfo may hold a password (R6-7)
            raise PermanentBackendError(
                f"{what} is not a plain https://host URL (userinfo, a backslash, whitespace or a"
                " control character, or read differently by the HTTP client); nothing is sent to it"
            )
        raise PermanentBackendError(
            f"{what} {origin} is not a Microsoft cloud host; nothing is sent to it (allow it"
            f" on this host with {ENV_ALLOWED_HOSTS}, outside the vault)"
        )
    return bool(found)


#: how every file cvault writes that holds its own secrets begins (``cvault-keyfile-v1:``,
#: ``cvault-custody-v1``, ...): such a file is never a client secret or a certificate
CVAULT_MAGIC = b"cvault-"


class CredentialFileRules:
    """The files a credential must never be read from (review4 R4-4): the vault's own secret
    material (key file, passphrase file, custody files, TLS key) and anything in the vault
    folder. Checked where the file is read (:func:`read_secret_file`), on every load, so a stored
    configuration naming one is refused however it got there. Compared by real path and by
    device and inode (a hard link is the same file)."""

    def __init__(self, files=(), folders=()):
        self.files = frozenset(os.path.realpath(os.fspath(f)) for f in files if f)
        self.folders = tuple(os.path.realpath(os.fspath(d)) for d in folders if d)
        self._inodes = set()
        for f in self.files:
            with contextlib.suppress(OSError):
                st = os.stat(f)
                self._inodes.add((st.st_dev, st.st_ino))

    def refusal(self, path: Path | str, st: os.stat_result | None = None) -> str | None:
        """Why ``path`` may not be read as a credential, or None."""
        real = os.path.realpath(os.fspath(path))
        if real in self.files or (st is not None and (st.st_dev, st.st_ino) in self._inodes):
            return "is one of the vault's own secret files (key, passphrase, custody or TLS key file)"
        for folder in self.folders:
            if os.path.commonpath([real, folder]) == folder:
                return "lies in the vault folder"
        return None


def read_secret_file(path: Path | str, rules: CredentialFileRules | None = None) -> str:
    """Client secret (or certificate PEM) from a file that only the owner can read (refused
    otherwise, as ssh does). Refused (IntegrityFailure, exit 6: a configuration naming one was
    not written by cvault) when ``rules`` forbid the file or it begins with a cvault magic: the
    vault's own secrets are never sent anywhere as a credential. The message names the path only."""
    p = Path(path)
    try:
        st = p.stat()
        refusal = rules.refusal(p, st) if rules is not None else None
        if refusal is not None:
            raise IntegrityFailure(f"integrity failure: the credential file {p} {refusal}; it is never read")
        if st.st_mode & 0o077:
            raise PermanentBackendError(f"client secret file {p} is readable by others (chmod 600 it)")
        data = p.read_bytes()
    except OSError as exc:
        raise PermanentBackendError(f"client secret file {p}: {exc.strerror or 'unreadable'}") from None
    if data.lstrip().startswith(CVAULT_MAGIC):
        raise IntegrityFailure(
            f"integrity failure: the credential file {p} is a cvault secret file (key or custody"
            " file); it is never sent as a credential"
        )
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise PermanentBackendError(f"client secret file {p} is not UTF-8 text") from None
    if not secret:
        raise PermanentBackendError(f"client secret file {p} is empty")
    return secret


def provider_from_config(
    config,
    *,
    cache: SealedTokenCache | None = None,
    prompt: Callable[[str], None] | None = None,
    environ=None,
    verify: bool | str = True,
    sleep: Callable[[float], None] = time.sleep,
    service: str = "Microsoft Graph",
    rules: CredentialFileRules | None = None,
):
    """The token provider a :class:`~vault.backends.onedrive_config.OneDriveConfig` describes (or
    any configuration with the same app-registration fields and ``scopes``, such as
    :class:`~vault.custody.keyvault_config.KeyVaultCustodyConfig`, with ``service`` naming it).

    Reads the secret (file or environment variable) or the certificate PEM now, so a missing
    credential fails at start-up with one line, not at the first upload. ``rules``: the files
    that must never be read as the credential (the vault's; :class:`CredentialFileRules`)."""
    config.validate()
    environ = os.environ if environ is None else environ
    # the authority is where the secret goes: a Microsoft host, or one this host allows (R4-4);
    # the vault's "instance_discovery: false" is honoured only for a host this host allows
    allowed = require_endpoint(config.authority_host, "authority_host", MICROSOFT_AUTHORITY_HOSTS, environ)
    timeout = (config.connect_timeout, config.read_timeout)
    common = dict(
        authority_host=config.authority_host,
        cache=cache,
        instance_discovery=config.instance_discovery if allowed else True,
        verify=verify,
        timeout=timeout,
        service=service,
    )
    if config.credential == "device-code":
        return DeviceCodeProvider(
            config.tenant_id,
            config.client_id,
            prompt=prompt,
            sleep=sleep,
            scopes=config.delegated_scopes,
            **common,
        )
    if config.credential == "secret-file":
        return ClientCredentialsProvider(
            config.tenant_id,
            config.client_id,
            client_secret=read_secret_file(config.secret_file, rules),
            scopes=config.scopes,
            **common,
        )
    if config.credential == "secret-env":
        secret = environ.get(config.secret_env, "").strip()
        if not secret:
            raise PermanentBackendError(
                f"environment variable {config.secret_env} (client secret) is not set"
            )
        return ClientCredentialsProvider(
            config.tenant_id, config.client_id, client_secret=secret, scopes=config.scopes, **common
        )
    pem = read_secret_file(config.certificate_file, rules)
    key_pem = _pem_block(pem, "PRIVATE KEY")
    cert_pem = _pem_block(pem, "CERTIFICATE")
    if key_pem is None:
        raise PermanentBackendError(f"{config.certificate_file} holds no private key")
    if not config.certificate_thumbprint and not cert_pem:
        raise PermanentBackendError(
            f"{config.certificate_file} holds no certificate and no thumbprint is configured"
        )
    return ClientCredentialsProvider(
        config.tenant_id,
        config.client_id,
        private_key_pem=key_pem,
        certificate_thumbprint=config.certificate_thumbprint or None,
        public_certificate_pem=cert_pem,
        scopes=config.scopes,
        **common,
    )


_PEM = re.compile(r"-----BEGIN ([A-Z ]*)-----\r?\n.*?-----END \1-----", re.S)


def _pem_block(text: str, label: str) -> str | None:
    """The first PEM block whose label ends with ``label`` ("PRIVATE KEY" matches "RSA PRIVATE KEY")."""
    for match in _PEM.finditer(text):
        if match.group(1).endswith(label):
            return match.group(0) + "\n"
    return None
