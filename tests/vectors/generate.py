"""Regenerate the checked-in test vectors (docs/format.md sections 2 and 3).

Source: produced by this script from the fixed inputs below with cvault's own implementation;
AES-256-GCM itself is cryptography's (OpenSSL), whose correctness is established by NIST CAVP
vectors in that project. The vectors pin cvault's *layout* (header, AAD encoding, labels) so that
a change of format is caught. Run: python -m tests.vectors.generate
"""

from __future__ import annotations

import json
from pathlib import Path

from vault import blob, crypto, keys

HERE = Path(__file__).parent

VAULT_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
CLIENT_ID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
ROOT = bytes(range(32))
DEK = bytes(range(100, 132))
NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
DOCUMENT = b'{"fields":{"host":"10.0.0.1","password":"hunter2"},"kind":"access"}'


def _flip(hex_blob: str, offset: int) -> str:
    data = bytearray.fromhex(hex_blob)
    data[offset] ^= 0x01
    return data.hex()


def build() -> dict:
    valid_blob = blob.encrypt_record(
        DEK, DOCUMENT, vault_id=VAULT_ID, client_id=CLIENT_ID, record_id=7, record_version=3, nonce=NONCE
    ).hex()
    empty_blob = blob.encrypt_record(
        DEK, b"", vault_id=VAULT_ID, client_id=CLIENT_ID, record_id=1, record_version=1, nonce=NONCE
    ).hex()
    expect = {"vault_id": VAULT_ID.hex(), "client_id": CLIENT_ID.hex(), "record_id": 7, "record_version": 3}
    k_wrap = crypto.hkdf_sha256(ROOT, salt=VAULT_ID, info=keys.label(keys.PURPOSE_CLIENT_KEY_WRAP))
    client_key = bytes(range(200, 232))
    ring = keys.Keyring(VAULT_ID)
    aad = ring.client_key_aad(CLIENT_ID.hex(), 1)
    wrapped_client_key = (NONCE + crypto.aead_encrypt(k_wrap, NONCE, client_key, aad)).hex()
    return {
        "source": "tests/vectors/generate.py (see its docstring)",
        "blob": {
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
                    "name": "empty document",
                    "dek": DEK.hex(),
                    "nonce": NONCE.hex(),
                    "document": "",
                    "expect": {**expect, "record_id": 1, "record_version": 1},
                    "blob": empty_blob,
                },
            ],
            "invalid": [
                {"name": "flipped ciphertext byte", "blob": _flip(valid_blob, 70), "expect": expect},
                {
                    "name": "flipped tag byte",
                    "blob": _flip(valid_blob, len(valid_blob) // 2 - 1),
                    "expect": expect,
                },
                {"name": "flipped magic", "blob": _flip(valid_blob, 0), "expect": expect},
                {
                    "name": "unknown format version 2",
                    "blob": valid_blob[:8] + "02" + valid_blob[10:],
                    "expect": expect,
                },
                {
                    "name": "unknown blob type 2",
                    "blob": valid_blob[:10] + "02" + valid_blob[12:],
                    "expect": expect,
                },
                {"name": "flipped vault id", "blob": _flip(valid_blob, 6), "expect": expect},
                {"name": "flipped nonce", "blob": _flip(valid_blob, 55), "expect": expect},
                {
                    "name": "header for another record",
                    "blob": valid_blob,
                    "expect": {**expect, "record_id": 8},
                },
                {
                    "name": "older version in place of the current",
                    "blob": valid_blob,
                    "expect": {**expect, "record_version": 4},
                },
                {"name": "another client", "blob": valid_blob, "expect": {**expect, "client_id": "ff" * 16}},
                {"name": "truncated to the header", "blob": valid_blob[:124], "expect": expect},
                {"name": "empty", "blob": "", "expect": expect},
            ],
        },
        "client_key_wrap": {
            "root": ROOT.hex(),
            "vault_id": VAULT_ID.hex(),
            "client_id": CLIENT_ID.hex(),
            "key_version": 1,
            "purpose_key": k_wrap.hex(),
            "client_key": client_key.hex(),
            "wrapped": wrapped_client_key,
        },
    }


if __name__ == "__main__":
    (HERE / "format_v1.json").write_text(json.dumps(build(), indent=2) + "\n")
    print("wrote", HERE / "format_v1.json")
