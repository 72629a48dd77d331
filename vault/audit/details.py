"""Client-revealing audit details (record paths), sealed under a per-client audit-detail key.

Why a key of its own: the client key is versioned and ``client rotate-key`` destroys old versions,
which would make every detail sealed before a rotation unreadable. The audit-detail key is one
random 32-byte key per client, created on first use, wrapped under the root-derived
``client-key-wrap`` key with ``AAD("client-audit-key", vault_id, client_id)`` and stored in
``client_audit_keys``. It is destroyed only when the client is shredded, by
:func:`destroy_client_audit_key`; from then on the sealed details read as ``[shredded]`` while the
sealed bytes stay in the hash-chained entries, so the chain still verifies.

Sealed detail: ``N || AES-256-GCM(K_detail, N, UTF-8 detail, AAD("audit-detail", vault_id,
client_id))``; the event's ``detail_key`` is ``"audit:<client_id>"``.
"""

from __future__ import annotations

from vault import crypto
from vault.clock import to_epoch
from vault.errors import BackendError, CryptoError, IntegrityFailure, VaultSealed
from vault.store import stored

KEY_REF_PREFIX = "audit:"
SHREDDED = "[shredded]"
UNREADABLE = "[unreadable]"
SEALED = "[sealed]"
CUSTODY_UNAVAILABLE = "[custody unavailable]"
#: a detail key the custodian could not be asked for just now (never a real key: keys are 32 bytes)
_UNAVAILABLE = b"unavailable"


def destroy_client_audit_key(conn, client_id: str) -> str | None:
    """Delete ``client_id``'s audit-detail key; returns its fingerprint, or None if it had none.

    Called by the shred (vault.sla) inside its key-destruction transaction, next to the deletion of
    the client-key versions: the caller owns ``conn`` and the transaction, and is responsible for
    the SQLite secure_delete / WAL truncate / vacuum that follows. Idempotent (a resumed shred may
    call it again)."""
    row = conn.execute(
        "SELECT fingerprint FROM client_audit_keys WHERE client_id = ?", (client_id,)
    ).fetchone()
    conn.execute("DELETE FROM client_audit_keys WHERE client_id = ?", (client_id,))
    return row[0] if row else None


def _live(conn, client_id: str) -> bool:
    """The client exists and its shred has not started."""
    return (
        conn.execute("SELECT 1 FROM clients WHERE id = ? AND shred_state IS NULL", (client_id,)).fetchone()
        is not None
    )


#: the entry of a client's unwrapped audit-detail key in the service's shared key cache
CACHE_TAG = "audit-detail"


class DetailKeys:
    """Seal and open audit details. Keys are read fresh for every call (a shred in another
    process must take effect at once), except in the service, where :meth:`seal` keeps the
    unwrapped key in the pool's shared key cache (``cache``, the cache of the client keys) under
    the same rule as the client keys: the caller has checked the client row it read for this
    request (no shred started: ``VaultContext.seal_detail``), and a shred drops the client's
    entries before it destroys anything (docs/service.md, "Key cache")."""

    def __init__(self, db, keyring, clock):
        self.db = db
        self.keyring = keyring
        self.clock = clock

    def _unwrap(self, wrapped: object, client_id: str, client_name: str, conn=None) -> bytes:
        # no row MAC covers the wrapped key: a file writer's TEXT or INTEGER is exit 6, never
        # converted (bytes(10**13) was a MemoryError from secret get: review9 R9-5)
        sealed = stored.blob(wrapped, stored.SEALED_KEY_LEN, f"client_audit_keys row of client {client_name}")
        try:
            return self.keyring.unwrap_client_audit_key(sealed, client_id, conn=conn)
        except CryptoError:
            raise IntegrityFailure(
                f"integrity failure: audit-detail key of client {client_name} failed authentication"
            ) from None

    def key(self, client_id: str, client_name: str, conn=None) -> bytes | None:
        """The client's audit-detail key (None if it has none): the wrapped key and the custody
        version that opens it are read in one snapshot (a rotation re-wraps both at once), retried
        if a rotation overtook it (``Database.read_retrying``)."""

        def read(snapshot, touch):
            row = snapshot.execute(
                "SELECT wrapped FROM client_audit_keys WHERE client_id = ?", (client_id,)
            ).fetchone()
            if row is None:
                return None
            touch(client_id)
            return self._unwrap(row[0], client_id, client_name, snapshot)

        if conn is not None:
            return read(conn, lambda _: None)
        return self.db.read_retrying(read)

    def seal(
        self, client_id: str, client_name: str, detail: str, cache=None
    ) -> tuple[bytes | None, str | None]:
        """Seal ``detail`` for the client; (None, None) if the client is being shredded or gone.
        ``cache``: the service's shared key cache (see the class), or None."""
        key = cache.get((client_id, CACHE_TAG)) if cache is not None else None
        if key is None:
            key = self._seal_key(client_id, client_name)
            if key is None:
                return None, None
            if cache is not None:
                cache.put((client_id, CACHE_TAG), key)
        sealed = crypto.seal(key, detail.encode("utf-8"), self.keyring.audit_detail_aad(client_id))
        return sealed, KEY_REF_PREFIX + client_id

    def _seal_key(self, client_id: str, client_name: str) -> bytes | None:
        """The client's audit-detail key, created if it has none; None if its shred has started."""
        key = self.key(client_id, client_name)
        if key is None:
            with self.db.write() as conn:
                # created and wrapped under the custody version current in this transaction (a
                # rotation committed before it has moved the client to a new one)
                key = self.key(client_id, client_name, conn)
                if key is None:
                    if not _live(conn, client_id):
                        return None  # never (re)create a key for a client whose shred has started
                    key = crypto.new_key()
                    conn.execute(
                        "INSERT INTO client_audit_keys (client_id, wrapped, fingerprint, created_at)"
                        " VALUES (?, ?, ?, ?)",
                        (
                            client_id,
                            self.keyring.wrap_client_audit_key(key, client_id, conn=conn),
                            crypto.key_fingerprint(key),
                            to_epoch(self.clock.now()),
                        ),
                    )
        return key

    def reader(self) -> DetailReader:
        return DetailReader(self)


class DetailReader:
    """Opens the details of many events (one listing or export), caching keys for that one pass."""

    def __init__(self, keys: DetailKeys):
        self._keys = keys
        self._cache: dict[str, bytes | None] = {}

    def _key(self, client_id: str) -> bytes | None:
        if client_id not in self._cache:
            try:
                self._cache[client_id] = self._keys.key(client_id, client_id)
            except IntegrityFailure:
                # it fails authentication, or the client's custody secret is gone or does not match
                self._cache[client_id] = b""
            except BackendError:
                # the custodian (Key Vault) is unreachable: the log still lists, details say so
                self._cache[client_id] = _UNAVAILABLE
        return self._cache[client_id]

    def open(self, sealed: bytes | None, key_ref: str | None) -> str | None:
        """The detail text, ``[shredded]`` when the client's key is gone, ``[unreadable]`` when it
        fails authentication, None when the event has no detail."""
        if sealed is None:
            return None
        if not key_ref or not key_ref.startswith(KEY_REF_PREFIX):
            # details written before audit-detail keys existed were sealed under a client-key
            # version that rotation or a shred has destroyed since
            return SHREDDED
        client_id = key_ref[len(KEY_REF_PREFIX) :]
        try:
            key = self._key(client_id)
        except VaultSealed:
            return SEALED
        if key is None:
            return SHREDDED
        if key is _UNAVAILABLE:
            return CUSTODY_UNAVAILABLE
        if not key:
            return UNREADABLE
        try:
            return crypto.unseal(key, bytes(sealed), self._keys.keyring.audit_detail_aad(client_id)).decode(
                "utf-8", "replace"
            )
        except CryptoError:
            return UNREADABLE
