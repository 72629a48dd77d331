"""Checked-in format vectors (docs/format.md): layout pinned, valid ones open, invalid ones fail."""

import json
from pathlib import Path

import pytest

from vault import blob, crypto, keys
from vault.errors import CryptoError, IntegrityFailure, VaultSealed

VECTORS = json.loads((Path(__file__).parent / "vectors" / "format_v1.json").read_text())


def _expect(e):
    return dict(
        vault_id=bytes.fromhex(e["vault_id"]),
        client_id=bytes.fromhex(e["client_id"]),
        record_id=e["record_id"],
        record_version=e["record_version"],
    )


@pytest.mark.parametrize("vec", VECTORS["blob"]["valid"], ids=lambda v: v["name"])
def test_valid_blob_vectors_generate_and_open(vec):
    dek, nonce = bytes.fromhex(vec["dek"]), bytes.fromhex(vec["nonce"])
    made = blob.encrypt_record(dek, vec["document"].encode(), nonce=nonce, **_expect(vec["expect"]))
    assert made.hex() == vec["blob"]
    assert (
        blob.decrypt_record(bytes.fromhex(vec["blob"]), dek, **_expect(vec["expect"]))
        == vec["document"].encode()
    )


@pytest.mark.parametrize("vec", VECTORS["blob"]["invalid"], ids=lambda v: v["name"])
def test_invalid_blob_vectors_fail_with_the_one_error(vec):
    dek = bytes.fromhex(VECTORS["blob"]["valid"][0]["dek"])
    with pytest.raises(CryptoError):
        blob.decrypt_record(bytes.fromhex(vec["blob"]), dek, **_expect(vec["expect"]))


def test_client_key_wrap_vector():
    """The pre-custody construction (format 1 before custody): kept only to migrate old vaults."""
    v = VECTORS["client_key_wrap"]
    ring = keys.Keyring(bytes.fromhex(v["vault_id"]))
    ring.load_root(bytes.fromhex(v["root"]))
    ring.legacy_client_wrap = True
    assert ring.purpose_key(keys.PURPOSE_CLIENT_KEY_WRAP).hex() == v["purpose_key"]
    key = ring.unwrap_client_key(bytes.fromhex(v["wrapped"]), v["client_id"], v["key_version"], "x")
    assert key.hex() == v["client_key"]
    # the same wrap under another version or client does not open
    with pytest.raises(IntegrityFailure):
        ring.unwrap_client_key(bytes.fromhex(v["wrapped"]), v["client_id"], 2, "x")
    with pytest.raises(IntegrityFailure):
        ring.unwrap_client_key(bytes.fromhex(v["wrapped"]), "00" * 16, 1, "x")


def test_header_layout_matches_the_spec_table():
    vec = VECTORS["blob"]["valid"][0]
    data = bytes.fromhex(vec["blob"])
    assert data[0:4] == b"CVLT" and data[4] == 1 and data[5] == 1
    assert data[6:22].hex() == vec["expect"]["vault_id"]
    assert data[22:38].hex() == vec["expect"]["client_id"]
    assert int.from_bytes(data[38:46], "big") == 7
    assert int.from_bytes(data[46:50], "big") == 3
    assert data[50:62].hex() == vec["nonce"]
    assert len(data) == 62 + len(vec["document"]) + crypto.TAG_LEN


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 with the standard library: an implementation independent of vault.crypto."""
    import hashlib
    import hmac

    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_custody_wrap_key_construction_matches_docs_format():
    """K_wrap(c, n) = HKDF(K_client-key-wrap || S(c, n), vault_id,
    "cvault/v1/client-key-wrap/custody" || LP(client_id) || LP(n)) (docs/format.md section 2)."""
    vault_id, root = bytes(range(16)), bytes(range(32, 64))
    client_id, n, secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 3, bytes(range(100, 132))
    ring = keys.Keyring(vault_id)
    ring.load_root(root)
    k_ckw = _hkdf_sha256(root, vault_id, b"cvault/v1/client-key-wrap")
    assert ring.purpose_key(keys.PURPOSE_CLIENT_KEY_WRAP) == k_ckw
    info = (
        b"cvault/v1/client-key-wrap/custody"
        + len(client_id).to_bytes(4, "big")
        + client_id.encode()
        + (8).to_bytes(4, "big")
        + n.to_bytes(8, "big")
    )
    expected = _hkdf_sha256(k_ckw + secret, vault_id, info)
    assert ring.custody_wrap_key(client_id, n, secret) == expected
    client_key = bytes(32)
    wrapped = ring.wrap_client_key(client_key, client_id, 1, custody=(n, secret))
    assert crypto.unseal(expected, wrapped, ring.client_key_aad(client_id, 1)) == client_key
    # another custody version or secret opens nothing
    with pytest.raises(IntegrityFailure):
        ring.unwrap_client_key(wrapped, client_id, 1, "x", custody=(n + 1, secret))
    with pytest.raises(IntegrityFailure):
        ring.unwrap_client_key(wrapped, client_id, 1, "x", custody=(n, bytes(32)))
    # and without custody nothing opens: no fallback to the root-derived key alone
    with pytest.raises(VaultSealed):
        ring.unwrap_client_key(wrapped, client_id, 1, "x")
