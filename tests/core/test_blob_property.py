"""Property tests: arbitrary bytes given to the blob parser raise only the one integrity error."""

from hypothesis import given, settings
from hypothesis import strategies as st

from vault import blob
from vault.errors import CryptoError

DEK = bytes(32)
EXPECT = dict(vault_id=bytes(16), client_id=bytes(16), record_id=1, record_version=1)
VALID = blob.encrypt_record(DEK, b'{"fields":{},"kind":"note"}', **EXPECT)


def _only_crypto_error(data: bytes) -> None:
    try:
        blob.decrypt_record(data, DEK, **EXPECT)
    except CryptoError:
        return
    raise AssertionError("accepted a blob it should not have")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data):
    if data == VALID:
        return
    _only_crypto_error(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_valid_header_prefix_with_arbitrary_tail(tail):
    data = VALID[:62] + tail
    if data == VALID:
        return
    _only_crypto_error(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=255))
def test_any_single_byte_change(offset, xor):
    data = bytearray(VALID)
    data[offset] ^= xor
    _only_crypto_error(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_header_raises_only_crypto_error(data):
    try:
        header = blob.parse_header(data)
    except CryptoError:
        return
    # random bytes that parse must carry the magic, a readable version and the record type
    assert data[: len(blob.MAGIC)] == blob.MAGIC and header.version in blob.READABLE_VERSIONS
    assert header.blob_type == blob.TYPE_RECORD
