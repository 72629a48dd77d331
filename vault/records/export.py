"""The export file of ``cvault client export`` (JSON Lines, one ``{"path", "kind", "fields"}`` per
record), written by the embedded facade and by the service client alike; light to import."""

from __future__ import annotations

import json
from pathlib import Path

from vault.errors import InvalidInput
from vault.home import write_private_file


def write_export(out: Path | str, exported: dict) -> dict:
    """Write ``export_records`` output as JSON Lines to a new 0600 file (never overwritten)."""
    records = exported["records"]
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    try:
        write_private_file(Path(out), data.encode("utf-8"), exclusive=True)
    except FileExistsError:
        raise InvalidInput(f"{out} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror}") from None
    return {"client": exported["client"], "exported": len(records), "file": str(out)}
