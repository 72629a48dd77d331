"""Test harness run as a subprocess by the kill -9 shred tests: the SLA sweep of ``cvault sla
sweep`` (as ``system:sweep``), with a pause after every committed shred step so that the kills
land inside and between all the steps.

    python -m tests.sla.shred_child HOME KEY_FILE PAUSE_SECONDS
"""

from __future__ import annotations

import sys
import time

from vault.facade import Vault
from vault.principal import Principal


def main(home: str, key_file: str, pause: str) -> int:
    seconds = float(pause)
    vault = Vault.open(home, service_options={"sla": {"shred_pause": lambda: time.sleep(seconds)}})
    try:
        vault.unseal_key_file(key_file)
        result = vault.sla.sweep(Principal.system("sweep"))
    finally:
        vault.close()
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
