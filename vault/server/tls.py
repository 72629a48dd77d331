"""``cvault serve --self-signed``: a development certificate that names the bind address.

The obvious hand-made certificate (``openssl req -x509 -subj /CN=127.0.0.1``) has no
subjectAltName, and TLS clients ignore the CN: every connection fails with "IP address mismatch".
This module makes one that works: a CA and a server certificate it signs, whose subjectAltName
lists the bind address (for a wildcard bind: the host's names and addresses, and loopback), kept
in ``<vault>/tls/`` (0700, files 0600) and reused while it still covers every name and has more
than 30 days to run. The CA's private key is never written: a new certificate means a new CA, and
the CLIs need the new ``ca.pem`` (docs/service.md, "TLS certificate"). Production uses the
organisation's CA instead (``--tls-cert``/``--tls-key``)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from vault import crypto
from vault.errors import InvalidInput
from vault.home import write_private_file

VALID_DAYS = 397  # what browsers accept for a server certificate; the CLI does not care
RENEW_DAYS = 30
WILDCARD = ("0.0.0.0", "::", "")  # noqa: S104 - names of the wildcard binds, compared, not bound


@dataclass
class SelfSigned:
    ca: Path
    cert: Path
    key: Path
    names: list[str]
    addresses: list[str]
    created: bool
    #: a certificate made earlier was replaced (names changed, or it was about to expire)
    replaced: bool = False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def wanted_names(host: str, extra: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) a certificate for a service bound to ``host`` must name."""
    names: list[str] = []
    addresses: list[str] = []

    def add(value: str) -> None:
        value = value.strip().strip("[]")
        if not value:
            return
        if _is_ip(value):
            value = str(ipaddress.ip_address(value))
            if value not in addresses and not ipaddress.ip_address(value).is_link_local:
                addresses.append(value)
        elif value not in names:
            names.append(value.lower())

    if host in WILDCARD:
        for name in (socket.gethostname(), socket.getfqdn()):
            add(name)
            try:
                for info in socket.getaddrinfo(name, None):
                    add(str(info[4][0]))
            except OSError:
                pass
        for value in ("localhost", "127.0.0.1", "::1"):
            add(value)
    else:
        add(host)
        if _is_ip(host) and ipaddress.ip_address(host).is_loopback or host == "localhost":
            for value in ("localhost", "127.0.0.1", "::1"):
                add(value)
    for value in extra:
        add(value)
    return names, addresses


def ensure_self_signed(home: Path, host: str, extra: tuple[str, ...], now_epoch: int) -> SelfSigned:
    """The self-signed pair in ``<home>/tls``: reused when it still fits, otherwise made anew."""
    folder = Path(home) / "tls"
    ca, cert, key = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    names, addresses = wanted_names(host, extra)
    replaced = cert.is_file()
    if cert.is_file() and key.is_file() and ca.is_file():
        have_names, have_addresses, expires = crypto.tls_certificate_names(cert.read_bytes())
        if (
            set(names) <= set(have_names)
            and set(addresses) <= set(have_addresses)
            and expires - now_epoch > RENEW_DAYS * 86400
        ):
            return SelfSigned(ca, cert, key, have_names, have_addresses, created=False)
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise InvalidInput(f"cannot create {folder}: {exc.strerror}") from None
    ca_pem, cert_pem, key_pem = crypto.self_signed_tls(
        names, addresses, days=VALID_DAYS, now_epoch=now_epoch, ca_label=f"cvault development CA ({host})"
    )
    write_private_file(key, key_pem)
    write_private_file(cert, cert_pem)
    write_private_file(ca, ca_pem)
    return SelfSigned(ca, cert, key, names, addresses, created=True, replaced=replaced)
