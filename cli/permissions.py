"""Print the permission table of docs/identity.md (``python -m cli.permissions``), generated from
:data:`vault.policy.PERMISSIONS` and the separation-of-duties sets; a test checks the doc is current."""

from __future__ import annotations

import sys

from vault.policy import permission_table

if __name__ == "__main__":
    sys.stdout.write(permission_table())
