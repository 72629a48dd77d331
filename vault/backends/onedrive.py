"""OneDrive / SharePoint document library backend (docs/spec.md §8), over :mod:`vault.backends.graph`.

Keeps the contract of :mod:`vault.backends.base`. Layout in the drive::

    <root_folder>/<first two characters of the name>/<name>

the same relative layout as :class:`vault.backends.local.LocalBackend`, so a pull restores a blob
to the path it has locally. Why sharded rather than flat: blob names are keyed hashes, so two
characters spread them evenly over at most 36 x 38 folders (256 for hex names). A vault with
100,000 blobs then has about 400 per folder, well under the 5,000-item SharePoint list view
threshold that slows large folders, and a listing costs one children request per shard folder plus
one per 200 items (Graph's default page), instead of one giant paged folder that every upload also
has to update. The cost is a listing that fans out over the shard folders (one extra request each).

Errors are :mod:`vault.backends.graph` exception classes, which subclass
:class:`~vault.errors.TransientBackendError`, :class:`~vault.errors.PermanentBackendError` and
:class:`~vault.errors.BlobNotFound` as the contract requires. Importing this module imports
``requests`` (through graph); the vault imports it only when a OneDrive replica is configured.
"""

from __future__ import annotations

from collections.abc import Iterator

from vault.backends.base import BLOB_NAME, validate_blob_name
from vault.backends.graph import GraphClient, GraphNotFound, TokenProvider
from vault.backends.onedrive_config import OneDriveConfig
from vault.errors import BlobNotFound

SHARD_CHARS = 2


class OneDriveBackend:
    def __init__(
        self,
        client: GraphClient,
        drive_id: str,
        root_folder: str = "cvault",
        *,
        list_page_size: int | None = None,
    ):
        self.client = client
        self.drive_id = drive_id
        self.root_folder = root_folder.strip("/")
        self.list_page_size = list_page_size
        #: "onedrive:" plus the first 12 characters of the drive id (enough to tell drives apart
        #: in sync status and shred certificates, short enough to read)
        self.location = f"onedrive:{drive_id[:12]}"

    @classmethod
    def from_config(
        cls, config: OneDriveConfig, token_provider: TokenProvider, **client_options
    ) -> OneDriveBackend:
        """Build the client and backend from a validated config. ``client_options`` go to
        :class:`GraphClient` (``sleep``, ``rng``, ``verify``, ``fragment_size``...)."""
        config.validate()
        from vault.backends.graph_auth import MICROSOFT_GRAPH_HOSTS, require_endpoint

        require_endpoint(config.graph_base_url, "graph_base_url", MICROSOFT_GRAPH_HOSTS)  # R4-4
        client = GraphClient(
            token_provider,
            base_url=config.graph_base_url,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            max_attempts=config.max_attempts,
            **client_options,
        )
        drive_id = config.drive_id or client.site_drive_id(
            config.site_hostname, config.site_path, config.library or None
        )
        return cls(client, drive_id, config.root)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"OneDriveBackend(location={self.location!r}, root_folder={self.root_folder!r})"

    def path(self, name: str) -> str:
        validate_blob_name(name)
        return f"{self.root_folder}/{name[:SHARD_CHARS]}/{name}"

    # -- the contract -------------------------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        """Replace the blob; returns once Graph stored it and its quickXorHash matched ours.

        Atomic for readers: a simple PUT or an upload session only replaces the item when the whole
        content arrived (Graph commits a session on its last fragment)."""
        self.client.upload(self.drive_id, self.path(name), data)

    def get(self, name: str) -> bytes:
        try:
            return self.client.download(self.drive_id, self.path(name))
        except GraphNotFound:
            raise BlobNotFound(f"blob {name} not found in {self.location}") from None

    def delete(self, name: str) -> None:
        """``permanentDelete``: skips the recycle bin. Idempotent (a missing blob is success).
        Retention policies or holds may still keep a copy: see docs/onedrive.md."""
        self.client.delete_permanently(self.drive_id, self.path(name))

    def list(self) -> Iterator[str]:
        for name, _hash, _size in self.list_with_hashes():
            yield name

    def exists(self, name: str) -> bool:
        item = self.client.item(self.drive_id, self.path(name))
        return item is not None and "file" in item

    # -- extras for sync ----------------------------------------------------------------------

    def list_with_hashes(self) -> Iterator[tuple[str, str | None, int]]:
        """``(name, quickXorHash or None, size)`` for every blob, from the children listings (no
        extra request per blob), for ``cvault sync verify``. Items that are not blobs are skipped."""
        for shard in self.client.children(
            self.drive_id, self.root_folder, page_size=self.list_page_size, select="id,name,folder"
        ):
            shard_name = shard.get("name")
            if "folder" not in shard or not isinstance(shard_name, str) or len(shard_name) != SHARD_CHARS:
                continue
            for child in self.client.children(
                self.drive_id,
                f"{self.root_folder}/{shard_name}",
                page_size=self.list_page_size,
                select="id,name,size,file",
            ):
                name = child.get("name")
                if (
                    "file" not in child
                    or not isinstance(name, str)
                    or not BLOB_NAME.match(name)
                    or name[:SHARD_CHARS] != shard_name.lower()
                ):
                    continue
                hashes = (child.get("file") or {}).get("hashes") or {}
                size = child.get("size")
                yield name, hashes.get("quickXorHash"), size if isinstance(size, int) else -1

    def remote_hash(self, name: str) -> str | None:
        """quickXorHash Graph reports for the blob, or None if it is not there."""
        item = self.client.item(self.drive_id, self.path(name))
        if item is None or "file" not in item:
            return None
        return ((item.get("file") or {}).get("hashes") or {}).get("quickXorHash")
