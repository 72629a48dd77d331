"""Regenerate the checked-in test vectors of docs/format.md: ``python -m tests.vectors.generate``.

Source: produced by this script from the fixed inputs below with cvault's own code (vault.keys,
vault.blob, vault.backup.container, vault.identity.codes); AES-256-GCM, HKDF, HMAC and Argon2id
themselves are cryptography's (OpenSSL), whose correctness is established by NIST CAVP and RFC
vectors in that project. These vectors pin cvault's *constructions*: labels, associated data,
which key wraps what, encodings. Every seal uses a fixed nonce here (cvault draws a random one);
every other input is fixed too, so the output is deterministic and ``tests/test_vectors.py``
checks the file equals what this script builds, that cvault's code opens or re-derives each
vector, and that the invalid ones fail at the step docs/format.md says.

Each construction's object carries its inputs, the exact associated data (``aad``) and the
result, so a second implementation can compare byte by byte.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from pathlib import Path

from vault import blob, crypto, keys
from vault.backup import container
from vault.identity import codes
from vault.identity.sessions import token_hash

HERE = Path(__file__).parent

VAULT_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
CLIENT_ID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
CLIENT_ID_HEX = CLIENT_ID.hex()
ROOT = bytes(range(32))
CLIENT_KEY = bytes(range(200, 232))
CUSTODY_SECRET = bytes(range(64, 96))
CUSTODY_VERSION = 2
AUDIT_DETAIL_KEY = bytes(range(150, 182))
DEK = bytes(range(100, 132))
KEY_VERSION = 1
RECORD_ID, RECORD_VERSION = 7, 3
PATH = "office/firewall"
DOCUMENT = b'{"fields":{"host":"10.0.0.1","password":"hunter2"},"kind":"access"}'
NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
#: the cheapest Argon2id cvault accepts (64 MiB, 1 pass): real slots are calibrated to ~0.5 s
ARGON2 = {"memory_kib": 65536, "iterations": 1, "lanes": 4, "normalize": "NFC"}
PASSPHRASE = "Zoë’s café — Ångström"


def _nonce(i: int) -> bytes:
    """A distinct fixed nonce per construction (cvault draws each one from os.urandom)."""
    return NONCE[:11] + bytes([NONCE[11] ^ i])


def _seal(key: bytes, plaintext: bytes, aad: bytes, i: int) -> dict:
    nonce = _nonce(i)
    return {
        "aad": aad.hex(),
        "nonce": nonce.hex(),
        "sealed": (nonce + crypto.aead_encrypt(key, nonce, plaintext, aad)).hex(),
    }


def _flip(hex_blob: str, offset: int) -> str:
    data = bytearray.fromhex(hex_blob)
    data[offset] ^= 0x01
    return data.hex()


def _ring() -> keys.Keyring:
    ring = keys.Keyring(VAULT_ID)
    ring.load_root(ROOT)
    return ring


def _slots() -> list[dict]:
    out = []
    typed = unicodedata.normalize("NFD", PASSPHRASE)
    secret = keys.passphrase_bytes(typed)
    salt = bytes(range(16))
    kek = keys.slot_kek("passphrase", secret, salt, ARGON2)
    out.append(
        {
            "kind": "passphrase",
            "slot_id": 2,
            "typed": typed,
            "typed_utf8": typed.encode("utf-8").hex(),
            "kdf_input": secret.hex(),
            "salt": salt.hex(),
            "kdf_params": ARGON2,
            "kek": kek.hex(),
            **_seal(kek, ROOT, keys.slot_aad(VAULT_ID, 2, "passphrase"), 1),
        }
    )
    file_secret = bytes(range(1, 33))
    text = keys.KEYFILE_PREFIX + base64.urlsafe_b64encode(file_secret).decode().rstrip("=") + "\n"
    salt = bytes(range(16, 32))
    kek = keys.slot_kek("keyfile", keys.parse_key_file_text(text), salt, None)
    out.append(
        {
            "kind": "keyfile",
            "slot_id": 3,
            "file_text": text,
            "kdf_input": file_secret.hex(),
            "salt": salt.hex(),
            "kdf_params": None,
            "kek": kek.hex(),
            **_seal(kek, ROOT, keys.slot_aad(VAULT_ID, 3, "keyfile"), 2),
        }
    )
    recovery_secret = bytes(range(33, 65))
    b32 = base64.b32encode(recovery_secret).decode().rstrip("=")
    recovery_text = "-".join(b32[i : i + 4] for i in range(0, len(b32), 4))
    salt = bytes(range(32, 48))
    kek = keys.slot_kek("recovery", keys.parse_recovery_key(recovery_text), salt, None)
    out.append(
        {
            "kind": "recovery",
            "slot_id": 1,
            "recovery_key": recovery_text,
            "kdf_input": recovery_secret.hex(),
            "salt": salt.hex(),
            "kdf_params": None,
            "kek": kek.hex(),
            **_seal(kek, ROOT, keys.slot_aad(VAULT_ID, 1, "recovery"), 3),
        }
    )
    return out


def _blob_vectors() -> dict:
    expect = {
        "vault_id": VAULT_ID.hex(),
        "client_id": CLIENT_ID_HEX,
        "record_id": RECORD_ID,
        "record_version": RECORD_VERSION,
        "kind": "access",
    }

    def make(document: bytes, record_id: int = RECORD_ID, version: int = RECORD_VERSION) -> str:
        return blob.encrypt_record(
            DEK,
            document,
            vault_id=VAULT_ID,
            client_id=CLIENT_ID,
            record_id=record_id,
            record_version=version,
            nonce=NONCE,
        ).hex()

    valid_blob = make(DOCUMENT)
    note = b'{"fields":{"text":"line one\\nline two"},"kind":"note"}'
    return {
        "valid": [
            {
                "name": "access record",
                "dek": DEK.hex(),
                "nonce": NONCE.hex(),
                "document": DOCUMENT.decode(),
                "expect": expect,
                "blob": valid_blob,
            },
            {
                "name": "note record",
                "dek": DEK.hex(),
                "nonce": NONCE.hex(),
                "document": note.decode(),
                "expect": {**expect, "record_id": 1, "record_version": 1, "kind": "note"},
                "blob": make(note, 1, 1),
            },
        ],
        # fails_at: the step of docs/format.md section 3 ("Verifying and opening") that refuses it
        "invalid": [
            {
                "name": "flipped ciphertext byte",
                "blob": _flip(valid_blob, 70),
                "expect": expect,
                "fails_at": 5,
            },
            {
                "name": "flipped tag byte",
                "blob": _flip(valid_blob, len(valid_blob) // 2 - 1),
                "expect": expect,
                "fails_at": 5,
            },
            {"name": "flipped magic", "blob": _flip(valid_blob, 0), "expect": expect, "fails_at": 2},
            {
                "name": "unknown format version 2",
                "blob": valid_blob[:8] + "02" + valid_blob[10:],
                "expect": expect,
                "fails_at": 2,
            },
            {
                "name": "unknown blob type 2",
                "blob": valid_blob[:10] + "02" + valid_blob[12:],
                "expect": expect,
                "fails_at": 2,
            },
            {"name": "flipped vault id", "blob": _flip(valid_blob, 6), "expect": expect, "fails_at": 3},
            {"name": "flipped nonce", "blob": _flip(valid_blob, 55), "expect": expect, "fails_at": 5},
            {
                "name": "header for another record",
                "blob": valid_blob,
                "expect": {**expect, "record_id": 8},
                "fails_at": 3,
            },
            {
                "name": "older version in place of the current",
                "blob": valid_blob,
                "expect": {**expect, "record_version": 4},
                "fails_at": 3,
            },
            {
                "name": "another client",
                "blob": valid_blob,
                "expect": {**expect, "client_id": "ff" * 16},
                "fails_at": 3,
            },
            {"name": "truncated to the header", "blob": valid_blob[:124], "expect": expect, "fails_at": 1},
            {"name": "empty", "blob": "", "expect": expect, "fails_at": 1},
            {
                # decrypts (steps 1-5 pass) but is no record document
                "name": "empty document",
                "dek": DEK.hex(),
                "blob": make(b"", 1, 1),
                "expect": {**expect, "record_id": 1, "record_version": 1},
                "fails_at": 6,
            },
            {
                "name": "document of another kind",
                "dek": DEK.hex(),
                "blob": make(note, 1, 1),
                "expect": {**expect, "record_id": 1, "record_version": 1, "kind": "access"},
                "fails_at": 6,
            },
        ],
    }


def _custody_file() -> str:
    """A custody file with one live secret and one tombstone (docs/format.md section 2.3)."""
    secret = base64.urlsafe_b64encode(CUSTODY_SECRET).decode().rstrip("=")
    body = (
        "cvault-custody-v1\n"
        f"vault {VAULT_ID.hex()}\n"
        "generation 5\n"
        f"k {CLIENT_ID_HEX} {CUSTODY_VERSION} {secret}\n"
        f"x {CLIENT_ID_HEX} 1 1780000000 {crypto.key_fingerprint(bytes(32))}\n"
    ).encode("ascii")
    return (body + b"end " + crypto.sha256(body).hex().encode("ascii") + b"\n").decode("ascii")


def _backup_frame() -> dict:
    backup_key = _ring().purpose_key(keys.PURPOSE_BACKUP)
    salt, backup_id = bytes(range(32)), bytes(range(16, 32))
    header = container.canonical(
        {
            "format": container.FORMAT,
            "vault_id": VAULT_ID.hex(),
            "backup_id": backup_id.hex(),
            "created_at": 1780000000,
            "chunk_size": container.DEFAULT_CHUNK,
            "salt": salt.hex(),
            "slots": [],
        }
    )
    k_file = container.file_key(backup_key, salt, backup_id)
    name = b"vault.db"
    content = b"SQLite format 3\x00"
    plaintext = bytes([container.KIND_DATABASE]) + len(name).to_bytes(2, "big") + name
    plaintext += len(content).to_bytes(8, "big") + content
    digest = crypto.sha256(header)
    aad = container.frame_aad(VAULT_ID, backup_id, digest, 0, last=True)
    nonce = container.frame_nonce(0)
    return {
        "backup_key": backup_key.hex(),
        "salt": salt.hex(),
        "backup_id": backup_id.hex(),
        "header": header.decode("ascii"),
        "header_sha256": digest.hex(),
        "file_key": k_file.hex(),
        "index": 0,
        "last": True,
        "nonce": nonce.hex(),
        "aad": aad.hex(),
        "plaintext": plaintext.hex(),
        "frame": (len(plaintext) + crypto.TAG_LEN).to_bytes(4, "big").hex()
        + crypto.aead_encrypt(k_file, nonce, plaintext, aad).hex(),
    }


#: rows of the kinds row MACs cover (docs/format.md section 8): integers, NULL, text, a blob, a
#: boolean expression (the delete marker), UTF-8 text beyond ASCII
ROW_MAC_ROWS = [
    ("users", [3, "zoë", 0, None, 1893456000, False]),
    ("records", [42, CLIENT_ID_HEX, bytes(range(32)), 3]),
    # a NULL pack_offset is left out of the encoding (rowmac.NULL_TAIL): the MAC of every
    # version from before migration 0024; a packed version's offset is the last value
    ("record_versions", [42, 2, True, None, 0, 1780300800, "eve", None]),
    ("record_versions", [43, 1, False, "0f" * 20, 412, 1780300800, "eve", 37]),
    ("meta", ["single_operator", "1"]),
]


def _row_macs(ring: keys.Keyring) -> dict:
    from vault.store import rowmac

    macer = crypto.Mac(ring.purpose_key(keys.PURPOSE_ROW_MAC))
    rows = []
    for table, values in ROW_MAC_ROWS:
        message = rowmac.encode(table, values)
        rows.append(
            {
                "table": table,
                "columns": list(rowmac.TABLES[table].columns),
                "values": [v.hex() if isinstance(v, bytes) else v for v in values],
                "message": message.hex(),
                "mac": macer.mac(message).hex(),
            }
        )
    return {"row_mac_key": ring.purpose_key(keys.PURPOSE_ROW_MAC).hex(), "rows": rows}


def build() -> dict:
    ring = _ring()
    purpose = {p: ring.purpose_key(p).hex() for p in sorted(keys.PURPOSES)}
    k_ckw = ring.purpose_key(keys.PURPOSE_CLIENT_KEY_WRAP)
    k_wrap = ring.custody_wrap_key(CLIENT_ID_HEX, CUSTODY_VERSION, CUSTODY_SECRET)
    custody_info = keys.CUSTODY_WRAP_INFO + keys._lp(CLIENT_ID_HEX) + keys._lp_int(CUSTODY_VERSION)
    ck = keys.ClientKeys(ring, CLIENT_ID_HEX, KEY_VERSION, CLIENT_KEY)
    tag_key = crypto.hkdf_sha256(CLIENT_KEY, salt=VAULT_ID, info=keys.label("name-tag"))
    meta = b'{"kind":"access","path":"office/firewall"}'
    blob_name_input = keys._aad("blob-name", VAULT_ID, CLIENT_ID_HEX, RECORD_ID, RECORD_VERSION)
    code_key = codes.hash_key(ring)
    private = bytes(range(7, 39))
    public = crypto.ed25519_public_key(private)
    token = "cvs1_" + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    return {
        "source": "tests/vectors/generate.py (see its docstring); docs/format.md section 6",
        "inputs": {
            "vault_id": VAULT_ID.hex(),
            "root_key": ROOT.hex(),
            "client_id_hex": CLIENT_ID_HEX,
            "client_key": CLIENT_KEY.hex(),
            "key_version": KEY_VERSION,
            "custody_secret": CUSTODY_SECRET.hex(),
            "custody_version": CUSTODY_VERSION,
            "record_id": RECORD_ID,
            "record_version": RECORD_VERSION,
            "dek": DEK.hex(),
        },
        "aad_encoding": [
            {
                "label": "slot",
                "fields": [VAULT_ID.hex(), 2, "passphrase"],
                "aad": keys.slot_aad(VAULT_ID, 2, "passphrase").hex(),
            },
            {
                "label": "client-key",
                "fields": [VAULT_ID.hex(), CLIENT_ID_HEX, KEY_VERSION],
                "aad": ring.client_key_aad(CLIENT_ID_HEX, KEY_VERSION).hex(),
            },
        ],
        "slots": _slots(),
        "purpose_keys": purpose,
        "custody_wrap": {
            "client_key_wrap_purpose_key": k_ckw.hex(),
            "custody_secret": CUSTODY_SECRET.hex(),
            "custody_version": CUSTODY_VERSION,
            "fingerprint": crypto.key_fingerprint(CUSTODY_SECRET),
            "ikm": (k_ckw + CUSTODY_SECRET).hex(),
            "info": custody_info.hex(),
            "k_wrap": k_wrap.hex(),
        },
        "client_key_wrap": {
            "key_version": KEY_VERSION,
            "client_key": CLIENT_KEY.hex(),
            "fingerprint": crypto.key_fingerprint(CLIENT_KEY),
            **_seal(k_wrap, CLIENT_KEY, ring.client_key_aad(CLIENT_ID_HEX, KEY_VERSION), 4),
        },
        "client_audit_key_wrap": {
            "audit_detail_key": AUDIT_DETAIL_KEY.hex(),
            **_seal(k_wrap, AUDIT_DETAIL_KEY, ring.client_audit_key_aad(CLIENT_ID_HEX), 5),
        },
        "client_key_wrap_legacy": {
            "root": ROOT.hex(),
            "vault_id": VAULT_ID.hex(),
            "client_id": CLIENT_ID_HEX,
            "key_version": KEY_VERSION,
            "purpose_key": k_ckw.hex(),
            "client_key": CLIENT_KEY.hex(),
            "wrapped": (
                NONCE + crypto.aead_encrypt(k_ckw, NONCE, CLIENT_KEY, ring.client_key_aad(CLIENT_ID_HEX, 1))
            ).hex(),
        },
        "record_key_wrap": {
            "record_id": RECORD_ID,
            "record_version": RECORD_VERSION,
            "key_version": KEY_VERSION,
            "dek": DEK.hex(),
            **_seal(CLIENT_KEY, DEK, ck._dek_aad(RECORD_ID, RECORD_VERSION), 6),
        },
        "record_meta": {
            "record_id": RECORD_ID,
            "key_version": KEY_VERSION,
            "plaintext": meta.decode(),
            **_seal(CLIENT_KEY, meta, ck._meta_aad(RECORD_ID), 7),
        },
        "path_tag": {"tag_key": tag_key.hex(), "path": PATH, "tag": ck.path_tag(PATH).hex()},
        "blob_name": {
            "blob_name_key": ring.purpose_key(keys.PURPOSE_BLOB_NAME).hex(),
            "message": blob_name_input.hex(),
            "record_id": RECORD_ID,
            "record_version": RECORD_VERSION,
            "name": ring.blob_name(CLIENT_ID_HEX, RECORD_ID, RECORD_VERSION),
            "local_path": f"blobs/{ring.blob_name(CLIENT_ID_HEX, RECORD_ID, RECORD_VERSION)[:2]}/"
            f"{ring.blob_name(CLIENT_ID_HEX, RECORD_ID, RECORD_VERSION)}",
        },
        "pack_name": {
            "message": keys._aad("pack-name-2", VAULT_ID, CLIENT_ID_HEX, RECORD_ID, 3, 400).hex(),
            "first_record_id": RECORD_ID,
            "count": 3,
            "length": 400,
            "name": ring.pack_name(CLIENT_ID_HEX, RECORD_ID, 3, 400),
            "message_v1": keys._aad("pack-name", VAULT_ID, CLIENT_ID_HEX, RECORD_ID).hex(),
            "name_v1": ring.pack_name_v1(CLIENT_ID_HEX, RECORD_ID),
        },
        "blob": _blob_vectors(),
        "totp_seal": {
            "user_id": 1,
            "secret": "JBSWY3DPEHPK3PXP",
            **_seal(
                ring.purpose_key(keys.PURPOSE_TOTP_SEAL),
                b"JBSWY3DPEHPK3PXP",
                keys._aad("totp-seal", VAULT_ID, "user", 1),
                8,
            ),
        },
        "auth_code_hash": {
            "hash_key": code_key.hex(),
            "kind": "recovery",
            "user_id": 1,
            "code": "K7QM-3XWD-9HRA",
            "message": b"\x00".join([b"recovery", b"1", codes.normalise("K7QM-3XWD-9HRA").encode()]).hex(),
            "hash": codes.code_hash(code_key, "recovery", 1, "K7QM-3XWD-9HRA").hex(),
        },
        "session_token_hash": {"token": token, "token_hash": token_hash(token)},
        "session_token_mac": {
            "session_key": ring.purpose_key(keys.PURPOSE_SESSION).hex(),
            "token": token,
            "user_id": 7,
            "message": keys._aad("session-token", VAULT_ID, token, 7).hex(),
            "token_mac": ring.session_token_mac(token, 7).hex(),
        },
        "row_mac": _row_macs(ring),
        "audit_signing_key": {
            "private": private.hex(),
            "public": public.hex(),
            **_seal(
                ring.purpose_key(keys.PURPOSE_AUDIT),
                private,
                keys._aad("audit", VAULT_ID, "audit-signing-key"),
                9,
            ),
        },
        "audit_detail": {
            "detail_key": "audit:" + CLIENT_ID_HEX,
            "audit_detail_key": AUDIT_DETAIL_KEY.hex(),
            "detail": PATH,
            **_seal(AUDIT_DETAIL_KEY, PATH.encode(), ring.audit_detail_aad(CLIENT_ID_HEX), 10),
        },
        "token_cache_seal": [
            {
                "file": name,
                "context": context,
                "plaintext": "{}",
                **_seal(
                    ring.purpose_key(keys.PURPOSE_TOKEN_CACHE_SEAL),
                    b"{}",
                    keys._aad("token-cache-seal", VAULT_ID, context),
                    11 + i,
                ),
            }
            for i, (name, context) in enumerate(
                [
                    ("graph-token-cache.sealed", "graph-token-cache"),
                    ("keyvault-token-cache.sealed", "keyvault"),
                ]
            )
        ],
        "custody_file": {"text": _custody_file()},
        "backup_frame": _backup_frame(),
    }


def main() -> None:
    (HERE / "format_v1.json").write_text(
        json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print("wrote", HERE / "format_v1.json")


if __name__ == "__main__":
    main()
