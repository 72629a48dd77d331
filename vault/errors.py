"""The one exception root of cvault.

Every error a user can see is a :class:`VaultError` subclass. The class docstring is the default
user message, the class carries its process exit code, and the CLI turns it into one line on stderr
in exactly one place (``cli.main``). Messages never contain secret values, passwords, codes, tokens
or key material: callers pass names (client, record path, user), never values.

Exit codes (documented in docs/cli.md and SECURITY.md):

    0 ok, 1 error, 2 usage / invalid input, 3 authentication failed, 4 access denied,
    5 not found, 6 integrity failure, 7 client expired or shredded, 8 vault sealed or locked,
    9 storage backend unavailable
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_DENIED = 4
EXIT_NOT_FOUND = 5
EXIT_INTEGRITY = 6
EXIT_CLIENT_UNAVAILABLE = 7
EXIT_SEALED = 8
EXIT_BACKEND = 9


class VaultError(Exception):
    """cvault failed."""

    exit_code = EXIT_ERROR
    #: stable machine-readable code, used by --json output and the HTTP API
    code = "error"

    def __init__(self, message: str | None = None):
        self.message = message or (self.__doc__ or self.code).strip().splitlines()[0]
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InvalidInput(VaultError):
    """invalid input."""

    exit_code = EXIT_USAGE
    code = "invalid_input"


class AuthenticationFailed(VaultError):
    """authentication failed."""

    exit_code = EXIT_AUTH
    code = "authentication_failed"


class AccessDenied(VaultError):
    """access denied."""

    exit_code = EXIT_DENIED
    code = "access_denied"


class StepUpRequired(AccessDenied):
    """a fresh TOTP code is needed to read secrets."""

    exit_code = EXIT_AUTH
    code = "stepup_required"


class NotFound(VaultError):
    """not found."""

    exit_code = EXIT_NOT_FOUND
    code = "not_found"


class Replayed(VaultError):
    """Already received: a signed event id seen before (HTTP 409)."""

    exit_code = EXIT_AUTH
    code = "replayed"


class IntegrityFailure(VaultError):
    """integrity failure: data failed authentication."""

    exit_code = EXIT_INTEGRITY
    code = "integrity_failure"


class AuditAlarm(IntegrityFailure):
    """integrity alarm: the audit log no longer extends its high-water mark."""

    def __init__(self, message: str | None = None, first_bad_seq: int | None = None):
        super().__init__(message)
        self.first_bad_seq = first_bad_seq


class ClientUnavailable(VaultError):
    """the client's SLA is not active."""

    exit_code = EXIT_CLIENT_UNAVAILABLE
    code = "client_unavailable"


class VaultSealed(VaultError):
    """the vault is sealed: no unseal key was given."""

    exit_code = EXIT_SEALED
    code = "vault_sealed"


class UpgradeRequired(VaultSealed):
    """the vault stays sealed until an operator runs ``cvault upgrade``: it holds state from an
    older cvault that must be authenticated once, explicitly (docs/format.md, "Upgrades")."""

    code = "upgrade_required"


class VaultLocked(VaultError):
    """the vault or account is locked."""

    exit_code = EXIT_SEALED
    code = "locked"


class InsecurePermissions(VaultError):
    """vault files are accessible by other users; refusing to open (chmod 700 the folder, 600 files)."""

    exit_code = EXIT_SEALED
    code = "insecure_permissions"


class AuditFailure(VaultError):
    """the audit log could not be written; the operation was refused."""

    exit_code = EXIT_SEALED
    code = "audit_unavailable"


class BackendError(VaultError):
    """storage backend failed."""

    exit_code = EXIT_BACKEND
    code = "backend_unavailable"


class StorageFull(BackendError):
    """no space left on the vault's storage; nothing was written: free space and retry."""

    code = "storage_full"


class StorageReadOnly(BackendError):
    """the vault's storage is read-only; nothing was written."""

    code = "storage_read_only"


class Busy(VaultError):
    """busy: too many password checks are waiting; try again in a moment (not counted as a failure)."""

    exit_code = EXIT_BACKEND
    code = "busy"


class BlobNotFound(BackendError):
    """blob not found in the storage backend."""

    exit_code = EXIT_NOT_FOUND
    code = "blob_not_found"


class TransientBackendError(BackendError):
    """storage backend temporarily unavailable; the operation can be retried."""

    code = "backend_transient"
    #: seconds the store asked us to wait before retrying (a ``Retry-After``), if it said
    retry_after: float | None = None


class PermanentBackendError(BackendError):
    """storage backend refused the operation."""

    code = "backend_permanent"


class CryptoError(Exception):
    """Opaque decrypt/verify failure raised by ``vault.crypto``.

    Deliberately *not* a VaultError and carrying no detail: callers that know which record or slot
    was being opened convert it into :class:`IntegrityFailure` (or AuthenticationFailed for an unseal
    slot) naming that object, never the failed check.
    """


def error_class(code: str, exit_code: int) -> type[VaultError]:
    """The facade's exception class for an error code (so ``except StepUpRequired`` works);
    for a code only the API has, a VaultError subclass carrying that code and exit code.

    The classes of ``vault.errors`` win over subclasses elsewhere that share a code (the store's
    ``SchemaError`` is an ``integrity_failure`` too): breadth first, the root module first."""
    matches: list[type[VaultError]] = []
    queue: list[type[VaultError]] = [VaultError]
    while queue:
        cls = queue.pop(0)
        if (
            getattr(cls, "code", None) == code
            and cls.exit_code == exit_code
            and cls.__module__.startswith("vault.")
        ):
            matches.append(cls)
        queue.extend(cls.__subclasses__())
    for cls in matches:
        if cls.__module__ == "vault.errors":
            return cls
    if matches:
        return matches[0]
    return type(
        f"ServiceError_{code}", (VaultError,), {"code": code, "exit_code": exit_code, "__doc__": f"{code}."}
    )
