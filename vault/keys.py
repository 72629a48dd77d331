"""The key hierarchy (docs/spec.md §3; byte-level details in docs/format.md).

    unseal slot secret (passphrase -> Argon2id | key file | recovery key)
        -> slot KEK  --AES-256-GCM-->  root key R (32 random bytes)
    R --HKDF-SHA256(salt=vault_id, info="cvault/v1/<purpose>")--> purpose keys
        client-key-wrap: wraps every client key version
        totp-seal, token-cache-seal, audit: seal other secrets at rest
    client key CK(c, v) (32 random bytes) --HKDF(info="cvault/v1/name-tag")--> path tag key
                                           --HKDF(info="cvault/v1/record-meta")--> (AAD label only)
        wraps record keys DEK(r, n) (32 random bytes per record version)
    DEK(r, n) encrypts the record blob.

AAD of every wrap binds the vault id and the ids/versions of what is wrapped, so a wrapped key
copied to another row, client or vault fails to open.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any, Final

from vault import crypto
from vault.errors import (
    AuthenticationFailed,
    CryptoError,
    IntegrityFailure,
    VaultSealed,
)

LABEL_PREFIX = b"cvault/v1/"

PURPOSE_CLIENT_KEY_WRAP = "client-key-wrap"
PURPOSE_TOTP_SEAL = "totp-seal"
PURPOSE_TOKEN_CACHE_SEAL = "token-cache-seal"  # noqa: S105 - an HKDF purpose label, not a key
PURPOSE_AUDIT = "audit"
PURPOSE_BLOB_NAME = "blob-name"
PURPOSE_SESSION = "session"
PURPOSE_BACKUP = "backup"
#: the HMAC secrets of PSA integrations (POST /v1/sla/contract-events; docs/sla.md)
PURPOSE_INTEGRATION_SEAL = "integration-seal"
#: row MACs of the rows a decision reads (vault.store.rowmac; docs/format.md "Row MACs")
PURPOSE_ROW_MAC = "row-mac"
PURPOSES = frozenset(
    {
        PURPOSE_INTEGRATION_SEAL,
        PURPOSE_CLIENT_KEY_WRAP,
        PURPOSE_TOTP_SEAL,
        PURPOSE_TOKEN_CACHE_SEAL,
        PURPOSE_AUDIT,
        PURPOSE_BLOB_NAME,
        PURPOSE_SESSION,
        PURPOSE_BACKUP,
        PURPOSE_ROW_MAC,
    }
)
#: HKDF info of a client's custody wrap key (docs/format.md section 2, "custody")
CUSTODY_WRAP_INFO = b"cvault/v1/client-key-wrap/custody"

SLOT_KINDS = ("passphrase", "keyfile", "recovery")


def label(*parts: str) -> bytes:
    return LABEL_PREFIX + "/".join(parts).encode()


_U32 = struct.Struct(">I").pack
_U64 = struct.Struct(">Q").pack
_INT_PREFIX = _U32(8)  # LP() of an integer: u32(8) || u64(value)


def _lp_int(value: int) -> bytes:
    return _INT_PREFIX + _U64(value)


def _lp(f: bytes | str | int) -> bytes:
    if isinstance(f, int):
        return _INT_PREFIX + _U64(f)
    if isinstance(f, str):
        f = f.encode()
    return _U32(len(f)) + f


def _aad(label_name: str, *fields: bytes | str | int) -> bytes:
    """Length-prefixed concatenation: unambiguous for any field contents.

    ``AAD(label, f1, ..., fn) = "cvault/v1/" || label || LP(f1) || ... || LP(fn)``, so the AAD of
    a context extends the AAD of any prefix of its fields: hot paths compute the constant prefix
    once (:meth:`Keyring._prefix`) and append the per-record fields with :func:`_lp_int`."""
    return LABEL_PREFIX + label_name.encode() + b"".join([_lp(f) for f in fields])


# --- unseal slots ----------------------------------------------------------------------------------


def slot_aad(vault_id: bytes, slot_id: int, kind: str) -> bytes:
    return _aad("slot", vault_id, slot_id, kind)


def slot_kek(kind: str, secret: bytes, salt: bytes, kdf_params: dict[str, Any] | None) -> bytes:
    """The key-encryption key of one unseal slot."""
    if kind == "passphrase":
        p = kdf_params or {}
        return crypto.argon2id(
            secret, salt=salt, memory_kib=p["memory_kib"], iterations=p["iterations"], lanes=p["lanes"]
        )
    if kind in ("keyfile", "recovery"):
        return crypto.hkdf_sha256(secret, salt=salt, info=label("slot", kind))
    raise ValueError(f"unknown slot kind {kind}")


#: how a passphrase becomes bytes (docs/format.md section 2.1): Unicode NFC, then UTF-8. A slot
#: records it in its kdf_params; a slot without the key was made before normalisation
PASSPHRASE_NORMALIZATION: Final = "NFC"  # noqa: S105 - a Unicode normal form, not a password


def passphrase_bytes(passphrase: str) -> bytes:
    """The bytes Argon2id takes: the passphrase in Unicode normal form C, UTF-8 encoded, so the
    same passphrase typed as precomposed or decomposed characters opens the same slot."""
    import unicodedata  # the passphrase path only (a C module, cheap)

    return unicodedata.normalize(PASSPHRASE_NORMALIZATION, passphrase).encode("utf-8")


#: the most unseal slots a vault holds (``slot add`` refuses more) and so the most a backup's
#: header lists: ``cvault restore`` derives at each slot of the secret's kind before anything in
#: the file is authenticated, so a planted header of thousands of slots at the highest costs
#: would keep it deriving for hours (review10 R10-2)
MAX_SLOTS: Final = 16
#: a slot's salt and wrapped root key as :func:`wrap_root` and the slot service write them
SLOT_SALT_LEN: Final = 16
SLOT_WRAPPED_LEN: Final = crypto.NONCE_LEN + crypto.KEY_LEN + crypto.TAG_LEN
_KDF_REQUIRED = frozenset({"memory_kib", "iterations", "lanes"})
_KDF_FIELDS = _KDF_REQUIRED | {"normalize"}


def valid_kdf_params(kind: object, params: object) -> bool:
    """Whether ``params`` (parsed) are the KDF parameters of a slot of ``kind`` as cvault writes
    them (docs/format.md section 2.1): None for a key file or recovery slot; for a passphrase
    slot an object of ``memory_kib``, ``iterations``, ``lanes`` within the crypto module's
    bounds (:func:`vault.crypto.argon2id_params_ok`) and, from 2026-12-02 on, ``normalize``
    "NFC"; nothing else."""
    if kind != "passphrase":
        return params is None
    return (
        isinstance(params, dict)
        and _KDF_REQUIRED <= set(params) <= _KDF_FIELDS
        and crypto.argon2id_params_ok(params["memory_kib"], params["iterations"], params["lanes"])
        and params.get("normalize", PASSPHRASE_NORMALIZATION) == PASSPHRASE_NORMALIZATION
    )


def malformed_slot(slot_id: object) -> IntegrityFailure:
    return IntegrityFailure(
        f"integrity failure: unseal slot {slot_id if type(slot_id) is int else '?'} in vault.db is not"
        " a slot cvault stored (vault.db was edited); run cvault doctor"
    )


def stored_kdf_params(slot_id: object, kind: object, value: object) -> dict[str, Any] | None:
    """The one decoder of a stored ``unseal_slots.kdf_params`` (review8 R8-5): NULL, or JSON text
    that :func:`valid_kdf_params` accepts for the slot's kind. A file writer's invalid JSON, a
    list, nesting past the recursion limit, a cost of the wrong type or a 4 TiB memory cost is an
    IntegrityFailure (exit 6, one line), before any key derivation runs."""
    params: object = None
    if value is not None:
        if type(value) is not str:
            raise malformed_slot(slot_id)
        from vault.settings import loads_stored

        try:
            params = loads_stored(value)
        except ValueError:
            raise malformed_slot(slot_id) from None
    if not valid_kdf_params(kind, params):
        raise malformed_slot(slot_id)
    return params if isinstance(params, dict) else None


def stored_slot_bytes(slot_id: object, salt: object, wrapped: object) -> tuple[bytes, bytes]:
    """A stored slot's ``salt`` and ``wrapped_root``: BLOBs of the sizes cvault writes (never
    ``bytes(value)``: a number would allocate that many bytes), else an IntegrityFailure."""
    if not (
        type(salt) is bytes
        and len(salt) == SLOT_SALT_LEN
        and type(wrapped) is bytes
        and len(wrapped) == SLOT_WRAPPED_LEN
    ):
        raise malformed_slot(slot_id)
    return salt, wrapped


def slot_is_normalized(kind: str, kdf_params: dict[str, Any] | None) -> bool:
    """False for a passphrase slot from before normalisation (migrated at its next unseal)."""
    return kind != "passphrase" or (kdf_params or {}).get("normalize") == PASSPHRASE_NORMALIZATION


def slot_secrets(kind: str, secret: bytes, kdf_params: dict[str, Any] | None) -> list[bytes]:
    """The byte strings to try on one slot for the unseal secret ``secret`` (a passphrase: its
    UTF-8 bytes as typed). A normalised passphrase slot takes NFC only; a slot made before
    normalisation took the bytes as typed, in whatever form the keyboard produced, so the typed
    bytes and both normal forms (C and D) are tried, each at most once."""
    if kind != "passphrase":
        return [secret]
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return [secret]
    nfc = passphrase_bytes(text)
    if slot_is_normalized(kind, kdf_params):
        return [nfc]
    import unicodedata

    candidates: list[bytes] = []
    for candidate in (secret, nfc, unicodedata.normalize("NFD", text).encode("utf-8")):
        if candidate not in candidates:
            candidates.append(candidate)
    return candidates


def open_slot(
    kind: str,
    secret: bytes,
    *,
    salt: bytes,
    kdf_params: dict[str, Any] | None,
    wrapped: bytes,
    vault_id: bytes,
    slot_id: int,
) -> bytes:
    """The root key from one slot row; raises CryptoError if ``secret`` does not open it."""
    for candidate in slot_secrets(kind, secret, kdf_params):
        kek = slot_kek(kind, candidate, salt, kdf_params)
        try:
            return unwrap_root(wrapped, kek, vault_id, slot_id, kind)
        except CryptoError:
            continue
    raise CryptoError()


def wrap_root(root: bytes, kek: bytes, vault_id: bytes, slot_id: int, kind: str) -> bytes:
    return crypto.seal(kek, root, slot_aad(vault_id, slot_id, kind))


def unwrap_root(wrapped: bytes, kek: bytes, vault_id: bytes, slot_id: int, kind: str) -> bytes:
    return crypto.unseal(kek, wrapped, slot_aad(vault_id, slot_id, kind))


# Key file: a text file holding "cvault-keyfile-v1:" + base64url of 32 random bytes.
KEYFILE_PREFIX = "cvault-keyfile-v1:"


def new_key_file_text() -> tuple[bytes, str]:
    secret = crypto.new_key()
    return secret, KEYFILE_PREFIX + base64.urlsafe_b64encode(secret).decode().rstrip("=") + "\n"


def parse_key_file_text(text: str) -> bytes:
    text = text.strip()
    if not text.startswith(KEYFILE_PREFIX):
        raise AuthenticationFailed("not a cvault key file")
    body = text[len(KEYFILE_PREFIX) :]
    try:
        secret = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise AuthenticationFailed("not a cvault key file") from None
    if len(secret) != crypto.KEY_LEN:
        raise AuthenticationFailed("not a cvault key file")
    return secret


# Recovery key: 32 random bytes shown once as 13 groups of 4 base32 characters (RFC 4648, no pad).


def new_recovery_key() -> tuple[bytes, str]:
    secret = crypto.new_key()
    text = base64.b32encode(secret).decode().rstrip("=")
    return secret, "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def parse_recovery_key(text: str) -> bytes:
    cleaned = "".join(ch for ch in text.upper() if ch.isalnum())
    try:
        secret = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except ValueError:
        raise AuthenticationFailed("malformed recovery key") from None
    if len(secret) != crypto.KEY_LEN:
        raise AuthenticationFailed("malformed recovery key")
    return secret


# --- the unsealed keyring ---------------------------------------------------------------------------


class Keyring:
    """Root-derived keys of an unsealed vault. ``None`` root means sealed: every use raises."""

    def __init__(self, vault_id: bytes):
        self.vault_id = vault_id
        self._root: bytes | None = None
        self._purpose: dict[str, bytes] = {}
        self._sealers: dict[str, crypto.Sealer] = {}
        self._aads: dict[tuple[str, ...], bytes] = {}  # public values only
        self._prefixes: dict[tuple[str, str], bytes] = {}
        self._row_macer: crypto.Mac | None = None
        self._blob_macer: crypto.Mac | None = None
        self._entry_macer: crypto.Mac | None = None

    @property
    def unsealed(self) -> bool:
        return self._root is not None

    def load_root(self, root: bytes) -> None:
        from vault.hardening import forbid_core_dumps

        forbid_core_dumps()  # no core file may hold the root key (issue 11)
        self._root = root
        self._purpose.clear()
        self._sealers.clear()
        self._row_macer = None
        self._blob_macer = None
        self._entry_macer = None

    def seal(self) -> None:
        self._root = None
        self._purpose.clear()
        self._sealers.clear()
        self._row_macer = None
        self._blob_macer = None
        self._entry_macer = None

    def row_macer(self) -> crypto.Mac:
        """HMAC-SHA256 under the row-MAC purpose key (vault.store.rowmac)."""
        macer = self._row_macer
        if macer is None:
            macer = self._row_macer = crypto.Mac(self.purpose_key(PURPOSE_ROW_MAC))
        return macer

    def audit_entry_tag(self, seq: int, entry_hash: bytes) -> bytes:
        """The tag an unsealed process stores on each audit entry it appends (review6 R6-1;
        vault.audit.mark): HMAC-SHA256 over ``AAD("audit-entry-tag", vault_id, seq, entry_hash)``
        under ``K_audit-entry = HKDF(K_audit, salt=vault_id, info="cvault/v1/audit/entry-tag")``,
        a key of its own (``K_audit`` itself is an AES-GCM key: never also an HMAC key)."""
        macer = self._entry_macer
        if macer is None:
            key = crypto.hkdf_sha256(
                self.purpose_key(PURPOSE_AUDIT), salt=self.vault_id, info=label("audit", "entry-tag")
            )
            macer = self._entry_macer = crypto.Mac(key)
        return macer.mac(_aad("audit-entry-tag", self.vault_id, seq, entry_hash))

    # sessions (docs/identity.md, "Sessions"): the row stores a keyed MAC of the bearer token that
    # binds the user id, so a row forged or moved to another user fails when the token is shown

    def session_token_mac(self, token: str, user_id: int) -> bytes:
        return crypto.hmac_sha256(
            self.purpose_key(PURPOSE_SESSION), _aad("session-token", self.vault_id, token, user_id)
        )

    def _prefix(self, label_name: str, client_id: str) -> bytes:
        """``AAD(label, vault_id, client_id)``, the constant start of a client's per-record AADs
        (public values only: nothing secret is cached)."""
        key = (label_name, client_id)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) > 4096:
                self._prefixes.clear()
            prefix = self._prefixes[key] = _aad(label_name, self.vault_id, client_id)
        return prefix

    def root(self) -> bytes:
        if self._root is None:
            raise VaultSealed()
        return self._root

    def purpose_key(self, purpose: str) -> bytes:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose}")
        key = self._purpose.get(purpose)
        if key is None:
            key = crypto.hkdf_sha256(self.root(), salt=self.vault_id, info=label(purpose))
            self._purpose[purpose] = key
        return key

    # client keys -----------------------------------------------------------------------------
    #
    # A client's keys (every client-key version and its audit-detail key) are wrapped under the
    # client's *custody wrap key* (docs/format.md section 2, "custody"):
    #
    #     K_wrap(c, n) = HKDF(ikm = K_client-key-wrap || S(c, n), salt = vault_id,
    #                         info = "cvault/v1/client-key-wrap/custody" || LP(client_id) || LP(n))
    #
    # where S(c, n) is the client's custody secret of custody version n, held by the custodian
    # outside the vault folder. Opening a client needs the root key *and* the custodian's current
    # S(c, n); destroying S(c, n) makes every copy of the wrapped keys under it useless.
    # ``custody_resolver(client_id, conn)`` returns (n, S) of the client's current version
    # (vault.custody.service). Vaults from before custody (``legacy_client_wrap``) wrapped under
    # K_client-key-wrap itself; that key is used only to migrate them (never as a fallback).

    #: set by the facade: (client_id, conn) -> (version, secret)
    custody_resolver: Callable[[str, Any], tuple[int, bytes]] | None = None
    legacy_client_wrap = False  # True only while a pre-custody vault is being migrated

    def custody_wrap_key(self, client_id: str, custody_version: int, custody_secret: bytes) -> bytes:
        if len(custody_secret) != crypto.KEY_LEN:
            raise IntegrityFailure(f"integrity failure: custody secret of client {client_id} is malformed")
        return crypto.hkdf_sha256(
            self.purpose_key(PURPOSE_CLIENT_KEY_WRAP) + custody_secret,
            salt=self.vault_id,
            info=CUSTODY_WRAP_INFO + _lp(client_id) + _lp_int(custody_version),
        )

    def client_wrap_key(
        self, client_id: str, custody: tuple[int, bytes] | None = None, conn: Any = None
    ) -> bytes:
        """The key wrapping ``client_id``'s keys: under ``custody`` (version, S) if given, else the
        client's current custody version from the resolver."""
        if custody is None:
            if self.legacy_client_wrap:
                return self.purpose_key(PURPOSE_CLIENT_KEY_WRAP)
            if self.custody_resolver is None:
                raise VaultSealed("vault sealed: no custodian is available to open client keys")
            custody = self.custody_resolver(client_id, conn)
        return self.custody_wrap_key(client_id, *custody)

    def client_key_aad(self, client_id: str, version: int) -> bytes:
        return _aad("client-key", self.vault_id, client_id, version)

    def wrap_client_key(
        self,
        client_key: bytes,
        client_id: str,
        version: int,
        *,
        custody: tuple[int, bytes] | None = None,
        conn: Any = None,
    ) -> bytes:
        return crypto.seal(
            self.client_wrap_key(client_id, custody, conn),
            client_key,
            self.client_key_aad(client_id, version),
        )

    def unwrap_client_key(
        self,
        wrapped: bytes,
        client_id: str,
        version: int,
        client_name: str,
        *,
        custody: tuple[int, bytes] | None = None,
        conn: Any = None,
    ) -> bytes:
        wrap_key = self.client_wrap_key(client_id, custody, conn)
        try:
            return crypto.unseal(wrap_key, wrapped, self.client_key_aad(client_id, version))
        except CryptoError:
            raise IntegrityFailure(
                f"integrity failure: key of client {client_name} (version {version}) failed authentication"
            ) from None

    # per-client audit-detail keys (docs/audit.md section 4): not versioned, so they outlive
    # client-key rotation; destroyed only with the client (vault.audit.details); wrapped under the
    # same custody wrap key as the client keys

    def client_audit_key_aad(self, client_id: str) -> bytes:
        return _aad("client-audit-key", self.vault_id, client_id)

    def wrap_client_audit_key(
        self, key: bytes, client_id: str, *, custody: tuple[int, bytes] | None = None, conn: Any = None
    ) -> bytes:
        return crypto.seal(
            self.client_wrap_key(client_id, custody, conn), key, self.client_audit_key_aad(client_id)
        )

    def unwrap_client_audit_key(
        self, wrapped: bytes, client_id: str, *, custody: tuple[int, bytes] | None = None, conn: Any = None
    ) -> bytes:
        """Raises CryptoError; the caller names the client."""
        return crypto.unseal(
            self.client_wrap_key(client_id, custody, conn), wrapped, self.client_audit_key_aad(client_id)
        )

    def audit_detail_aad(self, client_id: str) -> bytes:
        return _aad("audit-detail", self.vault_id, client_id)

    # generic sealing of small secrets under a purpose key ------------------------------------

    def seal_for(self, purpose: str, plaintext: bytes, *context: bytes | str | int) -> bytes:
        return crypto.seal(self.purpose_key(purpose), plaintext, _aad(purpose, self.vault_id, *context))

    def unseal_for(self, purpose: str, sealed: bytes, *context: bytes | str | int) -> bytes:
        """Raises CryptoError; the caller names what failed."""
        return crypto.unseal(self.purpose_key(purpose), sealed, _aad(purpose, self.vault_id, *context))

    def purpose_sealer(self, purpose: str, *context: bytes | str | int) -> tuple[crypto.Sealer, bytes]:
        """(a reused AES-GCM context under the purpose key, the AAD of ``context``): exactly the
        bytes of :meth:`seal_for` / :meth:`unseal_for`, for a value sealed on every append (the
        audit high-water mark)."""
        sealer = self._sealers.get(purpose)
        if sealer is None:
            sealer = self._sealers[purpose] = crypto.Sealer(self.purpose_key(purpose))
        key = (purpose, *map(str, context))
        aad = self._aads.get(key)
        if aad is None:
            aad = self._aads[key] = _aad(purpose, self.vault_id, *context)
        return sealer, aad

    def blob_name(self, client_id: str, record_id: int, version: int) -> str:
        """Opaque, deterministic blob name: keyed hash of the ids, 40 hex chars (160 bits)."""
        message = (
            self._prefix("blob-name", client_id) + _INT_PREFIX + _U64(record_id) + _INT_PREFIX + _U64(version)
        )
        # HMAC-SHA256 with the key schedule kept (same bytes as crypto.hmac_sha256)
        macer = self._blob_macer
        if macer is None:
            macer = self._blob_macer = crypto.Mac(self.purpose_key(PURPOSE_BLOB_NAME))
        return macer.mac(message).hex()[:40]

    def pack_name(self, client_id: str, first_record_id: int, count: int, length: int) -> str:
        """A pack's blob name (docs/format.md section 9): :meth:`blob_name`'s keyed hash under its
        own label over the client, the first record id the pack holds (record ids are never
        reused), how many record blobs it holds and its length in bytes, so it can never equal a
        record version's or an attachment's name, and the name (under the row MAC of every
        version in the pack) authenticates the pack's whole framing."""
        message = self._prefix("pack-name-2", client_id)
        for value in (first_record_id, count, length):
            message += _INT_PREFIX + _U64(value)
        return crypto.hmac_sha256(self.purpose_key(PURPOSE_BLOB_NAME), message).hex()[:40]

    def pack_name_v1(self, client_id: str, first_record_id: int) -> str:
        """The name of a pack written before names covered its count and length (label
        "pack-name", the first record id only): still read; docs/security.md non-guarantee 23."""
        message = self._prefix("pack-name", client_id) + _INT_PREFIX + _U64(first_record_id)
        return crypto.hmac_sha256(self.purpose_key(PURPOSE_BLOB_NAME), message).hex()[:40]

    def attachment_blob_name(self, client_id: str, record_id: int, attachment_id: int) -> str:
        """An attachment's blob name: :meth:`blob_name`'s keyed hash under its own label, so it
        can never equal a record version's name (docs/format.md, "Attachments")."""
        message = (
            self._prefix("attachment-name", client_id)
            + _INT_PREFIX
            + _U64(record_id)
            + _INT_PREFIX
            + _U64(attachment_id)
        )
        return crypto.hmac_sha256(self.purpose_key(PURPOSE_BLOB_NAME), message).hex()[:40]


_json_str = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (ensure_ascii)
#: ``json.dumps(meta, separators=(",", ":"), sort_keys=True)``, the encoder built once (a bulk
#: import seals one name per record; json.dumps would build an encoder each time)
_META_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class ClientKeys:
    """Operations keyed by one client key version: DEK wraps, path tags, sealed metadata."""

    def __init__(self, keyring: Keyring, client_id: str, version: int, key: bytes):
        self.keyring = keyring
        self.client_id = client_id
        self.version = version
        self._key = key
        self._tag_key = crypto.hkdf_sha256(key, salt=keyring.vault_id, info=label("name-tag"))
        self._tag_mac: crypto.Mac | None = None  # built on the second tag (a bulk import)
        self._sealer: crypto.Sealer | None = None  # built on first use
        # constant prefixes of the per-record AADs (docs/format.md section 2)
        self._dek_prefix = keyring._prefix("record-key", client_id)
        self._dek_suffix = _lp_int(version)
        self._meta_prefix = keyring._prefix("record-meta", client_id)
        self._meta_suffix = _lp_int(version)

    def _seal(self, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
        """Same bytes as ``crypto.seal(self._key, plaintext, aad)``, with the client key's
        AES-GCM context reused for every wrap and seal under it (``nonce``: fresh random bytes
        from ``crypto.fresh_keys``, bulk import only)."""
        if self._sealer is None:
            self._sealer = crypto.Sealer(self._key)
        return self._sealer.seal(plaintext, aad, nonce)

    def _dek_aad(self, record_id: int, version: int) -> bytes:
        return (
            self._dek_prefix + _INT_PREFIX + _U64(record_id) + _INT_PREFIX + _U64(version) + self._dek_suffix
        )

    def _meta_aad(self, record_id: int) -> bytes:
        return self._meta_prefix + _INT_PREFIX + _U64(record_id) + self._meta_suffix

    @property
    def fingerprint(self) -> str:
        return crypto.key_fingerprint(self._key)

    def path_tag(self, path: str) -> bytes:
        macer = self._tag_mac
        if macer is None:
            macer = self._tag_mac = crypto.Mac(self._tag_key)
        return macer.mac(path.encode("utf-8"))

    def wrap_dek(self, dek: bytes, record_id: int, version: int, nonce: bytes | None = None) -> bytes:
        return self._seal(dek, self._dek_aad(record_id, version), nonce)

    def unwrap_dek(self, wrapped: bytes, record_id: int, version: int) -> bytes:
        """Raises CryptoError; the caller names the record."""
        return crypto.unseal(self._key, wrapped, self._dek_aad(record_id, version))

    def seal_meta(self, meta: dict[str, Any], record_id: int, nonce: bytes | None = None) -> bytes:
        data = _META_JSON(meta).encode()
        return self._seal(data, self._meta_aad(record_id), nonce)

    def seal_record_meta(self, path: str, kind: str, record_id: int) -> bytes:
        """``seal_meta({"path": path, "kind": kind}, record_id)`` without the generic JSON
        encoder (the same bytes: keys sorted, no whitespace, ASCII escapes)."""
        data = ('{"kind":' + _json_str(kind) + ',"path":' + _json_str(path) + "}").encode()
        return self._seal(data, self._meta_aad(record_id))

    def _index_aad(self) -> bytes:
        return self.keyring._prefix("search-index", self.client_id) + self._meta_suffix

    def seal_index(self, document: bytes) -> bytes:
        """The client's search index (vault.records.search), sealed under this key version."""
        return self._seal(document, self._index_aad())

    def unseal_index(self, sealed: bytes) -> bytes:
        """Raises CryptoError (the caller rebuilds the index)."""
        return crypto.unseal(self._key, sealed, self._index_aad())

    def unseal_meta(self, sealed: bytes, record_id: int) -> dict[str, Any]:
        """Raises CryptoError; the caller names the record."""
        data = crypto.unseal(self._key, sealed, self._meta_aad(record_id))
        meta: dict[str, Any] = json.loads(data)
        return meta
