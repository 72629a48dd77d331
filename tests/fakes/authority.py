"""A fake Microsoft Entra ID authority over real HTTPS on 127.0.0.1, good enough for real msal.

What msal (python, 1.3x) asks, with ``instance_discovery=False``:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` -> ``authorization_endpoint``,
  ``token_endpoint``, ``device_authorization_endpoint``, ``issuer`` (msal reads the tenant from the
  token endpoint's first path segment, so the endpoints keep the ``/{tenant}/`` prefix);
* ``POST /{tenant}/oauth2/v2.0/token`` (form): ``grant_type=client_credentials`` with
  ``client_secret`` or ``client_assertion`` (a JWT signed with the certificate key; verified here
  with PyJWT against the registered certificate, and its ``x5t``/``x5t#S256`` thumbprint checked);
  the device-code grant (first poll ``authorization_pending``, then tokens); ``refresh_token``;
* ``POST /{tenant}/oauth2/v2.0/devicecode`` -> ``device_code``, ``user_code``,
  ``verification_uri``, ``expires_in``, ``interval``, ``message``;
* ``GET /common/discovery/instance`` only when instance discovery is on (answered anyway).

Token answers carry ``token_type: Bearer``, ``expires_in``, ``ext_expires_in``, ``access_token``,
and for the public client ``refresh_token``, ``id_token`` (unsigned claims are enough: msal only
decodes them) and ``client_info`` (base64url JSON with ``uid``/``utid``), from which msal builds
the account in its cache. Access tokens come from the shared :class:`TokenRegistry`, so the fake
Graph accepts exactly what this authority issued.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.fakes.graph_server import TokenRegistry
from tests.fakes.https import Drop, HTTPSService, QuietHandler

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class ClientApp:
    client_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None  # public certificate for client assertions
    public: bool = False


@dataclass
class DeviceCode:
    client_id: str
    scope: str
    polls: int = 0
    pending_polls: int = 1


@dataclass
class AuthorityLogEntry:
    method: str
    path: str
    form: dict = field(default_factory=dict)  # form field names only (values may be secrets)
    status: int = 0


class _Handler(QuietHandler):
    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        try:
            self.server.owner._handle(self)
        except Drop:
            self.close_connection = True


class FakeAuthority:
    def __init__(
        self,
        ssl_ctx,
        tokens: TokenRegistry | None = None,
        *,
        tenant: str = "contoso-tenant-id",
        expires_in: int = 3599,
        device_interval: int = 5,
    ) -> None:
        self.tokens = tokens or TokenRegistry()
        self.tenant = tenant
        self.expires_in = expires_in
        self.device_interval = device_interval
        self.clients: dict[str, ClientApp] = {}
        self.devices: dict[str, DeviceCode] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.log: list[AuthorityLogEntry] = []
        self.assertion_errors: list[str] = []
        self._lock = threading.Lock()
        self.service = HTTPSService(_Handler, ssl_ctx, self, "authority")

    @property
    def host(self) -> str:
        """The authority host URL (what msal's ``authority`` starts with)."""
        return self.service.origin

    @property
    def authority_url(self) -> str:
        return f"{self.host}/{self.tenant}"

    def start(self) -> FakeAuthority:
        self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    def register(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        public: bool = False,
    ) -> ClientApp:
        app = ClientApp(client_id, secret, certificate_pem, public)
        self.clients[client_id] = app
        return app

    def token_requests(self, grant_type: str | None = None) -> list[AuthorityLogEntry]:
        return [
            e
            for e in self.log
            if e.path.endswith("/oauth2/v2.0/token")
            and (grant_type is None or e.form.get("grant_type") == grant_type)
        ]

    # -- handling -----------------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        body = h.read_body()
        form = {k: v[0] for k, v in parse_qs(body.decode("ascii", "replace")).items()} if body else {}
        entry = AuthorityLogEntry(
            h.command, split.path, {k: (v if k == "grant_type" else "...") for k, v in form.items()}
        )
        with self._lock:
            self.log.append(entry)
        status, obj = self._route(h.command, split.path, form)
        entry.status = status
        h.send_bytes(status, json.dumps(obj).encode(), {"Cache-Control": "no-store"})

    def _route(self, method: str, path: str, form: dict) -> tuple[int, dict]:
        t = self.tenant
        if method == "GET" and path == f"/{t}/v2.0/.well-known/openid-configuration":
            base = self.authority_url
            return 200, {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "EU",
            }
        if method == "GET" and path == "/common/discovery/instance":
            return 200, {
                "tenant_discovery_endpoint": f"{self.authority_url}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [],
            }
        if method == "POST" and path == f"/{t}/oauth2/v2.0/devicecode":
            return self._devicecode(form)
        if method == "POST" and path == f"/{t}/oauth2/v2.0/token":
            return self._token(form)
        return 404, {"error": "not_found", "error_description": "no such endpoint"}

    @staticmethod
    def _oauth_error(code: str, description: str, status: int = 400) -> tuple[int, dict]:
        return status, {
            "error": code,
            "error_description": description,
            "error_codes": [0],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": secrets.token_hex(8),
            "correlation_id": secrets.token_hex(8),
        }

    def _devicecode(self, form: dict) -> tuple[int, dict]:
        app = self.clients.get(form.get("client_id", ""))
        if app is None or not app.public:
            return self._oauth_error("unauthorized_client", "AADSTS700016: unknown public client")
        code = secrets.token_urlsafe(24)
        user_code = secrets.token_hex(4).upper()
        self.devices[code] = DeviceCode(app.client_id, form.get("scope", ""))
        uri = "https://microsoft.com/devicelogin"
        return 200, {
            "device_code": code,
            "user_code": user_code,
            "verification_uri": uri,
            "expires_in": 900,
            "interval": self.device_interval,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
            f"{user_code} to authenticate.",
        }

    def _check_assertion(self, app: ClientApp, assertion: str) -> bool:
        import jwt  # PyJWT, installed with msal
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        if not app.certificate_pem:
            return False
        cert = x509.load_pem_x509_certificate(app.certificate_pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            self.assertion_errors.append(repr(exc))
            return False
        # msal keeps the base64url padding on x5t; compare without it.
        if str(header.get("x5t#S256", "")).rstrip("=") != _b64url(hashlib.sha256(der).digest()) and str(
            header.get("x5t", "")
        ).rstrip("=") != _b64url(hashlib.sha1(der).digest()):
            self.assertion_errors.append(f"thumbprint mismatch: {sorted(header)}")
            return False
        try:
            jwt.decode(
                assertion,
                cert.public_key(),
                algorithms=["RS256", "PS256"],
                audience=f"{self.authority_url}/oauth2/v2.0/token",
                issuer=app.client_id,
            )
        except jwt.PyJWTError as exc:
            self.assertion_errors.append(repr(exc))
            return False
        return True

    def _access(self, scope: str) -> dict:
        return {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": self.tokens.issue(scope=scope),
        }

    def _user_tokens(self, app: ClientApp, scope: str) -> dict:
        uid, utid = "00000000-0000-0000-0000-0000000000aa", self.tenant
        now = int(time.time())
        claims = {
            "aud": app.client_id,
            "iss": f"{self.authority_url}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": "Test Engineer",
            "oid": uid,
            "sub": "sub-" + uid,
            "tid": utid,
            "preferred_username": "engineer@contoso.example",
            "ver": "2.0",
        }
        id_token = ".".join(
            [_b64url(b'{"alg":"none","typ":"JWT"}'), _b64url(json.dumps(claims).encode()), ""]
        )
        refresh = "fake-rt-" + secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = app.client_id
        out = self._access(scope)
        out.update(
            {
                "refresh_token": refresh,
                "id_token": id_token,
                "client_info": _b64url(json.dumps({"uid": uid, "utid": utid}).encode()),
            }
        )
        return out

    def _token(self, form: dict) -> tuple[int, dict]:
        grant = form.get("grant_type")
        app = self.clients.get(form.get("client_id", ""))
        if app is None:
            return self._oauth_error("unauthorized_client", "AADSTS700016: application not found", 400)
        scope = form.get("scope", "")
        if grant == "client_credentials":
            if app.public:
                return self._oauth_error("invalid_client", "AADSTS7000218: public client", 401)
            if "client_secret" in form:
                if app.secret is None or not secrets.compare_digest(form["client_secret"], app.secret):
                    return self._oauth_error(
                        "invalid_client", "AADSTS7000215: Invalid client secret provided.", 401
                    )
            elif form.get("client_assertion_type") == JWT_BEARER and form.get("client_assertion"):
                if not self._check_assertion(app, form["client_assertion"]):
                    return self._oauth_error("invalid_client", "AADSTS700027: Client assertion failed.", 401)
            else:
                return self._oauth_error("invalid_client", "AADSTS7000216: credential required", 401)
            if scope.split() != ["https://graph.microsoft.com/.default"] and not scope.endswith("/.default"):
                return self._oauth_error("invalid_scope", "AADSTS1002012: use /.default for app-only")
            return 200, self._access(scope)
        if grant == DEVICE_GRANT:
            device = self.devices.get(form.get("device_code", ""))
            if device is None or device.client_id != app.client_id:
                return self._oauth_error("expired_token", "AADSTS70019: device code expired")
            device.polls += 1
            if device.polls <= device.pending_polls:
                return self._oauth_error("authorization_pending", "AADSTS70016: pending")
            del self.devices[form["device_code"]]
            return 200, self._user_tokens(app, device.scope or scope)
        if grant == "refresh_token":
            if self.refresh_tokens.pop(form.get("refresh_token", ""), None) != app.client_id:
                return self._oauth_error("invalid_grant", "AADSTS70000: refresh token invalid")
            return 200, self._user_tokens(app, scope)
        return self._oauth_error("unsupported_grant_type", "AADSTS70003: unsupported grant")
