"""Configuration of the Azure Key Vault / Managed HSM custodian: a dataclass, no I/O, light.

The app-registration options are those of the OneDrive replica (docs/onedrive.md): tenant and
application GUIDs, a client secret in a 0600 file or an environment variable, or a certificate PEM
(with its SHA-1 thumbprint or the certificate in the same file), the authority host for national
clouds, instance discovery. The configuration holds *where* the credential is, never the secret.

Key Vault specifics (REST API 7.4, docs/sla.md section 6):

* ``vault_url``: ``https://<name>.vault.azure.net`` (Key Vault) or
  ``https://<name>.managedhsm.azure.net`` (Managed HSM), or the national-cloud equivalents
  (``vault.azure.cn``, ``vault.usgovcloudapi.net``, ...).
* ``resource``: the token audience; by default ``https://`` + the vault host's DNS suffix
  (``https://vault.azure.net``, ``https://managedhsm.azure.net``), which is what Key Vault's
  authentication challenge names. The client refuses a challenge naming another resource, so a
  token is never requested for, or sent to, anything else.
* ``key_type``: ``RSA`` (software-protected, Key Vault standard), ``RSA-HSM`` (Key Vault premium or
  Managed HSM), wrapping with RSA-OAEP-256; ``oct-HSM`` (Managed HSM only), AES key wrap (A256KW,
  RFC 3394). Default ``RSA`` for a Key Vault, ``oct-HSM`` for a Managed HSM.
* ``key_size``: 2048, 3072 (default) or 4096 for RSA; 256 for oct-HSM.
* ``key_prefix``: keys are named ``<prefix>-<first 8 hex of the vault id>-<client id>-<custody
  version>`` (Key Vault names allow ``[0-9a-zA-Z-]``; ids are random, never client names).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from urllib.parse import urlsplit

from vault.backends.onedrive_config import (
    _DOMAIN,
    _ENV_NAME,
    _GUID,
    _THUMBPRINT,
    DEFAULT_AUTHORITY_HOST,
)
from vault.errors import InvalidInput

CREDENTIAL_KINDS = ("certificate", "secret-file", "secret-env")
DEFAULT_SECRET_ENV = "CVAULT_KEYVAULT_CLIENT_SECRET"  # noqa: S105 - the name of an environment variable, not its value
SERVICES = ("key-vault", "managed-hsm")
#: key type -> (wrap algorithm, allowed sizes, services that offer it)
KEY_TYPES = {
    "RSA": ("RSA-OAEP-256", (2048, 3072, 4096), ("key-vault",)),
    "RSA-HSM": ("RSA-OAEP-256", (2048, 3072, 4096), ("key-vault", "managed-hsm")),
    "oct-HSM": ("A256KW", (256,), ("managed-hsm",)),
}
_PREFIX = re.compile(r"^[0-9A-Za-z](?:[0-9A-Za-z-]{0,38}[0-9A-Za-z])?$")


def _fail(message: str):
    raise InvalidInput(f"Key Vault custody configuration: {message}")


def _origin_only(value: str, what: str) -> None:
    parts = urlsplit(value)
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        _fail(f"{what} must be an https:// origin without path, query or credentials")


@dataclass(frozen=True)
class KeyVaultCustodyConfig:
    vault_url: str
    tenant_id: str
    client_id: str
    credential: str = "certificate"
    secret_file: str = ""
    secret_env: str = DEFAULT_SECRET_ENV
    certificate_file: str = ""
    certificate_thumbprint: str = ""
    authority_host: str = DEFAULT_AUTHORITY_HOST
    instance_discovery: bool = True
    #: "key-vault" or "managed-hsm"; derived from the vault host when empty
    service: str = ""
    #: token audience; derived from the vault host when empty
    resource: str = ""
    key_type: str = ""
    key_size: int = 0
    key_prefix: str = "cvault"
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_attempts: int = 6

    # --- derived values ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        parts = urlsplit(self.vault_url)
        return f"https://{parts.netloc.lower()}"

    @property
    def effective_service(self) -> str:
        if self.service:
            return self.service
        labels = (urlsplit(self.vault_url).hostname or "").lower().split(".")
        if len(labels) > 2 and labels[1] == "managedhsm":
            return "managed-hsm"
        if len(labels) > 2 and labels[1] == "vault":
            return "key-vault"
        return ""

    @property
    def effective_resource(self) -> str:
        if self.resource:
            return self.resource.rstrip("/")
        labels = (urlsplit(self.vault_url).hostname or "").lower().split(".")
        if len(labels) > 2 and labels[1] in ("vault", "managedhsm"):
            return "https://" + ".".join(labels[1:])
        return ""

    @property
    def scopes(self) -> list[str]:
        """msal scope for app-only tokens: ``<resource>/.default``."""
        return [self.effective_resource + "/.default"]

    @property
    def effective_key_type(self) -> str:
        return self.key_type or ("oct-HSM" if self.effective_service == "managed-hsm" else "RSA")

    @property
    def effective_key_size(self) -> int:
        return self.key_size or (256 if self.effective_key_type == "oct-HSM" else 3072)

    @property
    def wrap_algorithm(self) -> str:
        return KEY_TYPES[self.effective_key_type][0]

    # --- validation -------------------------------------------------------------------------------

    def validate(self) -> KeyVaultCustodyConfig:
        """Return self, or raise :class:`InvalidInput` with one line naming the first bad field."""
        _origin_only(self.vault_url, "vault_url")
        if not (_GUID.match(self.tenant_id) or _DOMAIN.match(self.tenant_id)):
            _fail("tenant_id must be the directory (tenant) GUID or its domain name")
        if not _GUID.match(self.client_id):
            _fail("client_id must be the application (client) GUID")
        if self.credential not in CREDENTIAL_KINDS:
            _fail(
                f"credential must be one of {', '.join(CREDENTIAL_KINDS)} (app-only: the sweep is unattended)"
            )
        if self.credential == "secret-file" and not self.secret_file:
            _fail("credential secret-file needs secret_file")
        if self.credential == "secret-env" and not _ENV_NAME.match(self.secret_env or ""):
            _fail("credential secret-env needs secret_env, an environment variable name")
        if self.credential == "certificate":
            if not self.certificate_file:
                _fail("credential certificate needs certificate_file (PEM with the private key)")
            if self.certificate_thumbprint and not _THUMBPRINT.match(self.certificate_thumbprint):
                _fail("certificate_thumbprint must be 40 hex digits (SHA-1)")
        _origin_only(self.authority_host, "authority_host")
        if self.service and self.service not in SERVICES:
            _fail(f"service must be one of {', '.join(SERVICES)}")
        if not self.effective_service:
            _fail("service is required when vault_url is not a *.vault.* or *.managedhsm.* host")
        if self.resource:
            _origin_only(self.resource, "resource")
        elif not self.effective_resource:
            _fail("resource is required when vault_url is not a *.vault.* or *.managedhsm.* host")
        if self.key_type and self.key_type not in KEY_TYPES:
            _fail(f"key_type must be one of {', '.join(KEY_TYPES)}")
        _, sizes, services = KEY_TYPES[self.effective_key_type]
        if self.effective_service not in services:
            _fail(f"key type {self.effective_key_type} is not offered by a {self.effective_service}")
        if isinstance(self.key_size, bool) or not isinstance(self.key_size, int):
            _fail("key_size must be an integer")
        if self.effective_key_size not in sizes:
            _fail(f"key_size of a {self.effective_key_type} key must be one of {sizes}")
        if not isinstance(self.key_prefix, str) or not _PREFIX.match(self.key_prefix):
            _fail("key_prefix must be 1 to 40 letters, digits or dashes (Key Vault key names)")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 0 < value <= 600
            ):
                _fail(f"{name} must be a number of seconds between 0 and 600")
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or not 1 <= self.max_attempts <= 20
        ):
            _fail("max_attempts must be an integer from 1 to 20")
        if not isinstance(self.instance_discovery, bool):
            _fail("instance_discovery must be true or false")
        return self

    def key_name(self, vault_id: bytes, client_id: str, version: int) -> str:
        return f"{self.key_prefix}-{vault_id.hex()[:8]}-{client_id}-{version}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> KeyVaultCustodyConfig:
        if not isinstance(data, dict):
            _fail("expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            _fail(f"unknown field {unknown[0]!r}")
        for required in ("vault_url", "tenant_id", "client_id"):
            if not isinstance(data.get(required), str):
                _fail(f"{required} is required")
        for f in fields(cls):
            if f.name in data and f.type == "str" and not isinstance(data[f.name], str):
                _fail(f"{f.name} must be a string")
        return cls(**data).validate()
