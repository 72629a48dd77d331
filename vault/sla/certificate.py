"""Shred certificates: canonical encoding, signing input and offline verification.

A certificate file is one JSON object (docs/sla.md, "Certificate format")::

    {"format": "cvault-shred-certificate-file/v1",
     "certificate": { ...the certificate body... },
     "body": "<the canonical JSON text of the body, exactly as signed>",
     "signature": "<base64 Ed25519 signature>",
     "public_key": "ed25519:<base64>",   # informational: verify against a key you trust
     "public_key_fingerprint": "SHA256:<32 hex>"}   # compare with the one noted at init

Canonical body = JSON with keys sorted, separators ``,`` and ``:``, ASCII only (non-ASCII escaped),
UTF-8 bytes. Signature input = ``b"cvault/v1/shred-certificate\\x00" || canonical body``: the
label keeps a certificate signature from ever being valid as an audit checkpoint signature (both
are made with the vault's one Ed25519 audit key).

Verifying: parse the file; recompute the canonical encoding of ``certificate`` and require it to
equal ``body`` byte for byte; verify the signature over the label and ``body`` with the public key
the verifier trusts (``--pubkey``), never the one inside the file.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from vault import crypto
from vault.errors import CryptoError, IntegrityFailure, InvalidInput

CERT_TYPE = "cvault-shred-certificate"
#: 2 adds "custody" (what the custodian destroyed) and "can_still_undo" (P3, docs/sla.md section 4)
CERT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FILE_FORMAT = "cvault-shred-certificate-file/v1"
SIGNING_LABEL = b"cvault/v1/shred-certificate\x00"


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def signing_input(body_text: str) -> bytes:
    return SIGNING_LABEL + body_text.encode("ascii")


def digest(body_text: str) -> str:
    return crypto.sha256(body_text.encode("ascii")).hex()


def file_document(body_text: str, signature: bytes, public_key_text: str) -> dict:
    from vault.audit.signing import fingerprint, parse_public_key_text

    return {
        "format": FILE_FORMAT,
        "certificate": json.loads(body_text),
        "body": body_text,
        "signature": base64.b64encode(signature).decode(),
        "public_key": public_key_text,
        "public_key_fingerprint": fingerprint(parse_public_key_text(public_key_text)),
    }


class BadCertificate(IntegrityFailure):
    """integrity failure: the shred certificate's signature does not verify."""


def verify_document(doc: Any, public_key: bytes) -> dict:
    """Check a parsed certificate file against a trusted public key; returns the certificate body.

    Raises :class:`BadCertificate` (exit 6) for any mismatch, without saying which check failed,
    and :class:`InvalidInput` for something that is not a certificate file at all."""
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise InvalidInput("not a cvault shred certificate file")
    body, body_text, sig_text = doc.get("certificate"), doc.get("body"), doc.get("signature")
    if not isinstance(body, dict) or not isinstance(body_text, str) or not isinstance(sig_text, str):
        raise InvalidInput("not a cvault shred certificate file")
    try:
        signature = base64.b64decode(sig_text, validate=True)
        ok = body_text.isascii() and canonical(body) == body_text
    except ValueError:
        ok = False
    if not ok:
        raise BadCertificate()
    try:
        crypto.ed25519_verify(public_key, signature, signing_input(body_text))
    except CryptoError:
        raise BadCertificate() from None
    if body.get("type") != CERT_TYPE or body.get("version") not in READABLE_VERSIONS:
        raise InvalidInput("unsupported shred certificate version")
    return body
