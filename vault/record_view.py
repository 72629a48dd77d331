"""A record as read (``secret get``): a NamedTuple, light to import.

It lives apart from :mod:`vault.services.secrets` so that the remote CLI (service mode) can
rebuild it from JSON without importing the vault's crypto and storage layers.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SecretRecord(NamedTuple):
    client: str
    path: str
    kind: str
    version: int
    fields: dict[str, Any]
    created_at: str
    created_by: str

    def as_dict(self) -> dict:
        return {
            "client": self.client,
            "path": self.path,
            "kind": self.kind,
            "version": self.version,
            "fields": self.fields,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }
