"""Checked-in format vectors (docs/format.md): layout pinned, valid ones open, invalid ones fail."""

import json
from pathlib import Path

import pytest

from vault import blob, crypto, keys
from vault.errors import CryptoError, IntegrityFailure

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
    v = VECTORS["client_key_wrap"]
    ring = keys.Keyring(bytes.fromhex(v["vault_id"]))
    ring.load_root(bytes.fromhex(v["root"]))
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
