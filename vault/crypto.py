"""The only module of cvault that touches ``cryptography.hazmat``.

Everything else calls these functions. Rules kept here:

* AES-256-GCM with 96-bit random nonces for every encryption; context (vault, client, record,
  version, purpose) always goes into the associated data, so ciphertext cannot be moved.
* Every decrypt or verify failure raises the one opaque :class:`vault.errors.CryptoError`; callers
  name the object (record, slot) in the error they show, never the check that failed.
* Secrets are compared with :func:`constant_time_equal` only.
* Heavy or rarely used primitives (Argon2id, Ed25519) are imported lazily so that the
  ``cvault secret get`` path imports no more than AES-GCM and HKDF.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeGuard

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

try:  # hmac.compare_digest *is* this C function; importing it directly keeps OpenSSL's hashlib
    from _operator import (
        _compare_digest as _bytes_eq,  # (~2 ms) off the `secret get` path
    )
except ImportError:  # other Python implementations
    from hmac import compare_digest as _bytes_eq  # type: ignore[no-redef]
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.errors import Busy, CryptoError

KEY_LEN = 32  # AES-256
NONCE_LEN = 12  # 96-bit GCM nonce (NIST SP 800-38D 8.2.2 random construction)
TAG_LEN = 16

# Argon2id floor for the passphrase unseal slot (docs/spec.md §3: >= 64 MiB, tuned to ~0.5 s).
ARGON2_MIN_MEMORY_KIB = 64 * 1024
ARGON2_LANES = 4
ARGON2_TARGET_SECONDS = 0.5
ARGON2_MAX_ITERATIONS = 64
#: the most memory a passphrase slot's Argon2id may ask for: 16 times the floor (cvault writes the
#: floor; calibration tunes iterations only). With :data:`ARGON2_MAX_ITERATIONS` and at most
#: :data:`ARGON2_LANES` lanes, the bounds of every slot cvault writes or reads (review8 R8-5: a
#: file writer's 4 TiB memory cost is refused before any derivation allocates it)
ARGON2_MAX_MEMORY_KIB = 16 * ARGON2_MIN_MEMORY_KIB

# User password hashes (docs/spec.md §5): Argon2id, 64 MiB, 3 passes; stored in PHC string form.
PASSWORD_ITERATIONS = 3


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def new_key() -> bytes:
    """32 random bytes from the OS CSPRNG."""
    return os.urandom(KEY_LEN)


def new_nonce() -> bytes:
    return os.urandom(NONCE_LEN)


def fresh_keys(count: int, *, nonces: int) -> Iterator[tuple[bytes, ...]]:
    """``count`` tuples ``(key, nonce_1, ..., nonce_n)``, sliced from one read of the OS CSPRNG
    (a bulk import: one ``os.urandom`` call per batch instead of one per key and nonce). Each
    slice is fresh random bytes, used once: the same keys and nonces, in distribution, as
    :func:`new_key` and :func:`new_nonce` called one by one (never a counter)."""
    size = KEY_LEN + nonces * NONCE_LEN
    pool = os.urandom(count * size)
    for base in range(0, count * size, size):
        at = base + KEY_LEN
        yield (pool[base:at], *(pool[at + i * NONCE_LEN : at + (i + 1) * NONCE_LEN] for i in range(nonces)))


# --- AEAD -------------------------------------------------------------------------------------


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM; returns ciphertext || 16-byte tag."""
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise CryptoError() from None


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a fresh random nonce; returns nonce || ciphertext || tag."""
    nonce = new_nonce()
    return nonce + aead_encrypt(key, nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if not isinstance(sealed, (bytes, bytearray)) or len(sealed) < NONCE_LEN + TAG_LEN:
        raise CryptoError()
    return aead_decrypt(key, bytes(sealed[:NONCE_LEN]), bytes(sealed[NONCE_LEN:]), aad)


class Sealer:
    """``seal``/``unseal`` under one key with a reused AES-256-GCM context (bulk work under one
    client key); produces exactly the bytes of :func:`seal`."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
        """``nonce``: fresh random bytes from :func:`fresh_keys` (a bulk import), never reused."""
        nonce = nonce or new_nonce()
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        if not isinstance(sealed, (bytes, bytearray)) or len(sealed) < NONCE_LEN + TAG_LEN:
            raise CryptoError()
        try:
            return self._aead.decrypt(bytes(sealed[:NONCE_LEN]), bytes(sealed[NONCE_LEN:]), aad)
        except (InvalidTag, ValueError, TypeError, OverflowError):
            raise CryptoError() from None


# --- derivation and MACs -----------------------------------------------------------------------


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = KEY_LEN) -> bytes:
    """RFC 5869 HKDF-SHA256. ``info`` is a namespaced purpose label such as b"cvault/v1/..."."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


# SHA-256, HMAC and constant-time comparison come from cryptography too (already loaded for
# AES-GCM and HKDF): the stdlib hashlib/hmac pair would add ~2 ms to every `cvault secret get`.


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    mac = _hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


MAC_LEN = 32  # HMAC-SHA256


class Mac:
    """HMAC-SHA256 under one key, the key schedule computed once (row MACs: many short messages
    under the one row-MAC key). ``verify`` compares in constant time."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes):
        self._base = _hmac.HMAC(key, hashes.SHA256())

    def mac(self, message: bytes) -> bytes:
        h = self._base.copy()
        h.update(message)
        return h.finalize()

    def verify(self, message: bytes, tag: bytes) -> bool:
        return _bytes_eq(self.mac(message), tag)


def sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return _bytes_eq(a, b)


# --- Argon2id ------------------------------------------------------------------------------------

#: Argon2id runs one derivation at a time in the process (64 MiB each; and two at once deadlocked
#: some cryptography releases, docs/dependencies.md). At most ARGON2_QUEUE calls wait for their
#: turn, each at most ARGON2_WAIT_SECONDS; past either, :class:`vault.errors.Busy` (exit 9, HTTP
#: 503), which no caller counts as a failed login.
ARGON2_QUEUE = 16
ARGON2_WAIT_SECONDS = 20.0
_argon2_turn_lock = threading.Lock()
_argon2_gate = threading.Lock()
_argon2_waiting = [0]
#: set when the process stops (``cvault serve`` on SIGTERM): waiters give up at once with Busy
_argon2_closing = threading.Event()
_ARGON2_POLL_SECONDS = 0.05
#: how often a worker retries the host-wide ``flock`` while another process derives (a failed
#: non-blocking ``flock`` is one system call; a coarse poll left each hand-off idle for half of it,
#: which made six parallel logins across ``--workers 2`` slower than six in a row)
_ARGON2_HOST_POLL_SECONDS = 0.005
#: ``cvault serve --workers N``: the descriptor of ``<vault>/locks/argon2``, whose ``flock`` makes
#: the one derivation at a time host-wide (every worker opens the file itself, so the locks
#: exclude each other); empty: one at a time in this process only
_argon2_host_lock: list[int] = []


def argon2_share_host(path: str) -> None:
    """Make the one-at-a-time Argon2id turn host-wide: an ``flock`` on ``path`` besides the
    in-process lock (the service's worker processes, docs/service.md "Worker processes")."""
    _argon2_host_lock[:] = [os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)]


def argon2_close() -> None:
    """The process is stopping: every call waiting for its Argon2id turn, and every later one,
    raises :class:`Busy` (HTTP 503) instead of waiting (the one running finishes)."""
    _argon2_closing.set()


@contextmanager
def argon2_turn() -> Iterator[None]:
    """Hold the process's one Argon2id slot (a bounded queue; :class:`Busy` when full)."""
    with _argon2_gate:
        if _argon2_waiting[0] >= ARGON2_QUEUE:
            raise Busy()
        _argon2_waiting[0] += 1
    try:
        got = False
        waited = 0.0
        while not got and not _argon2_closing.is_set() and waited < ARGON2_WAIT_SECONDS:
            got = _argon2_turn_lock.acquire(timeout=_ARGON2_POLL_SECONDS)
            waited += _ARGON2_POLL_SECONDS
    finally:
        with _argon2_gate:
            _argon2_waiting[0] -= 1
    if not got:
        raise Busy()
    if _argon2_closing.is_set():
        _argon2_turn_lock.release()
        raise Busy()
    host = _argon2_host_lock[0] if _argon2_host_lock else None
    try:
        if host is not None:
            import fcntl

            held = False
            while not held and not _argon2_closing.is_set() and waited < ARGON2_WAIT_SECONDS:
                try:
                    fcntl.flock(host, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                except BlockingIOError:
                    _argon2_closing.wait(_ARGON2_HOST_POLL_SECONDS)
                    waited += _ARGON2_HOST_POLL_SECONDS
            if not held:
                raise Busy()
        try:
            yield
        finally:
            if host is not None:
                import fcntl

                fcntl.flock(host, fcntl.LOCK_UN)
    finally:
        _argon2_turn_lock.release()


class PasswordCheckUnavailable(Busy):
    """password check unavailable (the Argon2id library failed): try again; nothing was counted."""

    code = "password_check_unavailable"


def argon2id_params_ok(memory_kib: object, iterations: object, lanes: object) -> bool:
    """Whether these are Argon2id costs of a slot cvault writes or reads: INTEGERs (not bools)
    within the floor and :data:`ARGON2_MAX_MEMORY_KIB`, 1 to :data:`ARGON2_MAX_ITERATIONS`
    passes, 1 to :data:`ARGON2_LANES` lanes."""
    return (
        type(memory_kib) is int
        and ARGON2_MIN_MEMORY_KIB <= memory_kib <= ARGON2_MAX_MEMORY_KIB
        and type(iterations) is int
        and 1 <= iterations <= ARGON2_MAX_ITERATIONS
        and type(lanes) is int
        and 1 <= lanes <= ARGON2_LANES
    )


def argon2id(secret: bytes, *, salt: bytes, memory_kib: int, iterations: int, lanes: int) -> bytes:
    """Argon2id (RFC 9106) key derivation, 32-byte output; costs outside
    :func:`argon2id_params_ok` raise ValueError before anything is allocated."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    if not argon2id_params_ok(memory_kib, iterations, lanes):
        raise ValueError("Argon2id costs outside cvault's bounds (64 MiB-1 GiB, 1-64 passes, 1-4 lanes)")
    with argon2_turn():
        return Argon2id(
            salt=salt, length=KEY_LEN, iterations=iterations, lanes=lanes, memory_cost=memory_kib
        ).derive(secret)


def calibrate_argon2id(target_seconds: float = ARGON2_TARGET_SECONDS) -> dict[str, int]:
    """Pick Argon2id iterations at 64 MiB so one derivation takes about ``target_seconds`` here."""
    import time

    salt = random_bytes(16)
    iterations = 1
    while True:
        start = time.perf_counter()
        argon2id(
            b"calibrate",
            salt=salt,
            memory_kib=ARGON2_MIN_MEMORY_KIB,
            iterations=iterations,
            lanes=ARGON2_LANES,
        )
        elapsed = time.perf_counter() - start
        if elapsed >= target_seconds or iterations >= ARGON2_MAX_ITERATIONS:
            break
        # scale linearly towards the target, at least one more pass
        iterations = min(
            ARGON2_MAX_ITERATIONS, max(iterations + 1, int(iterations * target_seconds / max(elapsed, 1e-3)))
        )
    return {"memory_kib": ARGON2_MIN_MEMORY_KIB, "iterations": iterations, "lanes": ARGON2_LANES}


def password_hash(password: str) -> str:
    """Argon2id PHC string (``$argon2id$v=19$m=65536,t=3,p=4$salt$hash``)."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    with argon2_turn():
        return Argon2id(
            salt=random_bytes(16),
            length=KEY_LEN,
            iterations=PASSWORD_ITERATIONS,
            lanes=ARGON2_LANES,
            memory_cost=ARGON2_MIN_MEMORY_KIB,
        ).derive_phc_encoded(password.encode("utf-8"))


#: the PHC string :func:`password_hash` writes: Argon2id v19, decimal costs, a 16-byte salt and a
#: 32-byte hash in unpadded standard base64 (22 and 43 characters)
_PHC = re.compile(
    r"\$argon2id\$v=19\$m=([1-9][0-9]{0,9}),t=([1-9][0-9]{0,9}),p=([1-9][0-9]{0,9})"
    r"\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})"
)


def password_phc_ok(phc: object) -> TypeGuard[str]:
    """Whether a stored password hash is a PHC string of the form :func:`password_hash` writes
    with costs within :func:`argon2id_params_ok` (review10 R10-4: the costs come from the stored
    string, which a file writer can set to 2**32 - 1 passes). Parses only; derives nothing."""
    if type(phc) is not str:
        return False
    found = _PHC.fullmatch(phc)
    if found is None:
        return False
    memory_kib, iterations, lanes = (int(found.group(i)) for i in (1, 2, 3))
    return argon2id_params_ok(memory_kib, iterations, lanes)


def password_verify(password: str, phc: str) -> bool:
    """Constant-time verification of a password against its PHC string.

    True: the right password. False: a wrong one (``InvalidKey``). A stored hash that is not
    :func:`password_phc_ok` raises ValueError before any derivation (callers check it first and
    answer the integrity failure naming the user). Anything else -- the queue full
    (:class:`Busy`), the library failing -- raises: the caller fails closed *without* counting a
    failed attempt, so a broken or overloaded Argon2id never locks accounts whose owners typed
    the right password."""
    from cryptography.exceptions import InvalidKey
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    if not password_phc_ok(phc):
        raise ValueError("not a password hash cvault writes (Argon2id costs outside cvault's bounds)")
    with argon2_turn():
        try:
            Argon2id.verify_phc_encoded(password.encode("utf-8"), phc)
            return True
        except InvalidKey:
            return False
        except Exception:  # noqa: BLE001 - any other failure is not a wrong password: fail closed
            raise PasswordCheckUnavailable() from None


# --- Ed25519 -------------------------------------------------------------------------------------


def ed25519_generate() -> tuple[bytes, bytes]:
    """Returns (private_raw_32, public_raw_32)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    return (
        private.private_bytes_raw(),
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    )


def ed25519_public_key(private_raw: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.from_private_bytes(private_raw)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(private_raw: bytes, message: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(private_raw).sign(message)


def ed25519_verify(public_raw: bytes, signature: bytes, message: bytes) -> None:
    """Raises CryptoError unless ``signature`` is valid for ``message``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        raise CryptoError() from None


def key_fingerprint(key: bytes) -> str:
    """Public, non-reversible identifier of a key: first 16 hex chars of SHA-256 over a label.

    Used in shred certificates and slot listings; reveals nothing usable about the key.
    """
    return sha256(b"cvault/v1/fingerprint\x00" + key).hex()[:16]


# --- TLS certificates for `cvault serve --self-signed` (development, first contact) ----------------


def self_signed_tls(
    names: list[str], addresses: list[str], *, days: int, now_epoch: int, ca_label: str
) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and a server certificate it signs, for ``cvault serve --self-signed``.

    ECDSA P-256, SHA-256. The server certificate names every host name (``names``) and IP
    address (``addresses``) in its subjectAltName, is valid for ``days``, and is for TLS server
    authentication only; the CA (basicConstraints CA, pathlen 0) signs only it. The CA's private
    key is not returned: it is dropped here, so nothing can issue another certificate under it.
    Returns ``(ca_pem, server_cert_pem, server_key_pem)``; the key is unencrypted PKCS#8 PEM for
    the server, written 0600 by the caller."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start = datetime.datetime.fromtimestamp(now_epoch - 300, datetime.UTC)
    end = start + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_label[:64])])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or addresses or ["cvault"])[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    del ca_key
    return (
        ca.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def tls_certificate_names(cert_pem: bytes) -> tuple[list[str], list[str], int]:
    """The DNS names and IP addresses of a certificate's subjectAltName, and its expiry (epoch)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], int(cert.not_valid_after_utc.timestamp())
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    addresses = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return names, addresses, int(cert.not_valid_after_utc.timestamp())
