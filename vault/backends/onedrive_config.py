"""Configuration of the OneDrive replica (docs/spec.md §8): a plain dataclass, no I/O, no heavy imports.

Loading and saving the JSON file is the caller's job; :meth:`OneDriveConfig.to_dict` and
:meth:`OneDriveConfig.from_dict` give the dictionary form. Secrets are never stored here: the
client secret is read from a file (0600) or an environment variable named here, and a certificate
key from a PEM file; the config only holds *where* they are.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from urllib.parse import urlsplit

from vault.errors import InvalidInput

CREDENTIAL_KINDS = ("secret-file", "secret-env", "certificate", "device-code")
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_SECRET_ENV = "CVAULT_GRAPH_CLIENT_SECRET"  # noqa: S105 - the name of an environment variable, not its value

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_DRIVE_ID = re.compile(r"^[A-Za-z0-9!_.-]{1,200}$")
_THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")  # SHA-1 hex, as the Entra portal shows it
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# One folder name: OneDrive forbids " * : < > ? / \ |, leading/trailing spaces and trailing dots.
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]([A-Za-z0-9 _.-]{0,98}[A-Za-z0-9_-])?$")
_RESERVED = (
    {"con", "prn", "aux", "nul", ".lock", "desktop.ini", "forms"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)


def _fail(message: str):
    raise InvalidInput(f"OneDrive configuration: {message}")


def _https_url(value: str, what: str, *, path_required: bool = False) -> None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        _fail(f"{what} must be an https:// URL without query or credentials")
    if path_required and parts.path.strip("/") == "":
        _fail(f"{what} must include the API version, e.g. https://graph.microsoft.com/v1.0")


@dataclass(frozen=True)
class OneDriveConfig:
    tenant_id: str
    client_id: str
    credential: str = "secret-file"
    drive_id: str = ""
    #: instead of drive_id: SharePoint host name, site path and library (default library if empty)
    site_hostname: str = ""
    site_path: str = ""
    library: str = ""
    root_folder: str = "cvault"
    secret_file: str = ""
    secret_env: str = DEFAULT_SECRET_ENV
    certificate_file: str = ""  # PEM holding the private key (and usually the certificate)
    certificate_thumbprint: str = ""  # SHA-1 hex; if empty the certificate in the PEM is used
    authority_host: str = DEFAULT_AUTHORITY_HOST
    graph_base_url: str = DEFAULT_GRAPH_BASE_URL
    instance_discovery: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 10

    def validate(self) -> OneDriveConfig:
        """Return self, or raise :class:`InvalidInput` with one line naming the first bad field."""
        if not (
            _GUID.match(self.tenant_id)
            or _DOMAIN.match(self.tenant_id)
            or self.tenant_id in ("organizations", "common")
        ):
            _fail("tenant_id must be the directory (tenant) GUID or its domain name")
        if self.tenant_id in ("organizations", "common") and self.credential != "device-code":
            _fail("app-only credentials need the tenant GUID, not 'common' or 'organizations'")
        if not _GUID.match(self.client_id):
            _fail("client_id must be the application (client) GUID")
        if self.credential not in CREDENTIAL_KINDS:
            _fail(f"credential must be one of {', '.join(CREDENTIAL_KINDS)}")
        if self.credential == "secret-file" and not self.secret_file:
            _fail("credential secret-file needs secret_file")
        if self.credential == "secret-env" and not _ENV_NAME.match(self.secret_env or ""):
            _fail("credential secret-env needs secret_env, an environment variable name")
        if self.credential == "certificate":
            if not self.certificate_file:
                _fail("credential certificate needs certificate_file (PEM with the private key)")
            if self.certificate_thumbprint and not _THUMBPRINT.match(self.certificate_thumbprint):
                _fail("certificate_thumbprint must be 40 hex digits (SHA-1)")
        if self.drive_id:
            if not _DRIVE_ID.match(self.drive_id):
                _fail("drive_id has characters a Graph drive id never has")
            if self.site_hostname or self.site_path:
                _fail("give drive_id or site_hostname/site_path, not both")
        elif not (self.site_hostname and self.site_path):
            _fail("drive_id (or site_hostname and site_path) is required")
        elif not _DOMAIN.match(self.site_hostname):
            _fail("site_hostname must be a host name such as contoso.sharepoint.com")
        self._validate_root()
        _https_url(self.authority_host, "authority_host")
        if urlsplit(self.authority_host).path.strip("/"):
            _fail("authority_host must be the host only, e.g. https://login.microsoftonline.com")
        _https_url(self.graph_base_url, "graph_base_url", path_required=True)
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
            or not 1 <= self.max_attempts <= 50
        ):
            _fail("max_attempts must be an integer from 1 to 50")
        if not isinstance(self.instance_discovery, bool):
            _fail("instance_discovery must be true or false")
        return self

    def _validate_root(self) -> None:
        segments = self.root_folder.strip("/").split("/")
        if not self.root_folder.strip("/") or len(segments) > 8:
            _fail("root_folder must be a folder path of 1 to 8 names, e.g. cvault/blobs")
        for seg in segments:
            if (
                not _SEGMENT.match(seg)
                or seg.lower() in _RESERVED
                or seg.startswith("~$")
                or "_vti_" in seg.lower()
            ):
                _fail(f"root_folder name {seg!r} breaks OneDrive naming rules")

    @property
    def scopes(self) -> list[str]:
        """``<graph origin>/.default`` for app-only; national clouds have their own Graph host."""
        parts = urlsplit(self.graph_base_url)
        return [f"https://{parts.netloc}/.default"]

    @property
    def delegated_scopes(self) -> list[str]:
        parts = urlsplit(self.graph_base_url)
        return [f"https://{parts.netloc}/Files.ReadWrite.All"]

    @property
    def root(self) -> str:
        return self.root_folder.strip("/")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OneDriveConfig:
        if not isinstance(data, dict):
            _fail("expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            _fail(f"unknown field {unknown[0]!r}")
        for required in ("tenant_id", "client_id"):
            if not isinstance(data.get(required), str):
                _fail(f"{required} is required")
        for f in fields(cls):
            if f.name in data and f.type == "str" and not isinstance(data[f.name], str):
                _fail(f"{f.name} must be a string")
        return cls(**data).validate()
