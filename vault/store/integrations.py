"""The ``integrations`` table's secrets (0011_moving_in.sql; docs/sla.md "Contract events").

Each PSA integration's HMAC secret is sealed under the ``integration-seal`` purpose key, bound to
the integration's id (docs/format.md, table map). The webhook (vault.sla.contracts) opens it; the
row-MAC upgrade (vault.context, rowmac coverage 2) checks each row with it before MACing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vault.errors import CryptoError, IntegrityFailure
from vault.store.rowmac import RowTampered

if TYPE_CHECKING:
    from vault.keys import Keyring


def unseal_secret(keyring: Keyring, integration_id: int, sealed: bytes) -> bytes:
    """The secret of integration ``integration_id``; an integrity failure if it does not open
    under that id (swapped in from another row, or altered)."""
    try:
        return keyring.unseal_for("integration-seal", sealed, "integration", integration_id)
    except CryptoError:
        raise IntegrityFailure(
            f"integrity failure: the secret of integration {integration_id} failed authentication"
        ) from None


def verify_row(keyring: Keyring, values: tuple) -> None:
    """Before an integration row from before its row MAC gets one (rowmac.upgrade; ``values``:
    the covered columns): its sealed secret opens under its own id (a row a file writer planted,
    or whose secret it copied from another row, cannot), and a row without a secret is a removed
    one."""
    integration_id, _name, sealed, _at, _by, disabled_at = values
    if not isinstance(sealed, bytes) or type(integration_id) is not int:
        raise RowTampered(
            f"integrity failure: an integrations row (id {str(integration_id)[:16]}) is malformed;"
            " run cvault doctor"
        )
    if sealed == b"":
        if disabled_at is None:
            raise RowTampered(
                f"integrity failure: integration {integration_id} has no secret but is enabled;"
                " run cvault doctor"
            )
        return
    unseal_secret(keyring, integration_id, sealed)
