"""One worker of the rotation race tests (tests/core/test_rotation_races.py), the same in both modes.

A worker loops over put / list / get / edit / restore / rm / otp on its own three paths of client
``acme`` (plus the shared TOTP record ``shared/otp``) while a rotator loops ``rotate-key``. It
checks every answer against what it has had acknowledged and keeps, per path, the value of every
acknowledged version (so ``restore`` knows what it brings back). The mode is an adapter:
``do(op, path, **kw) -> (outcome, result, error)`` with outcome ``"ok"``, ``"not_found"`` or
``"failed <exit code or HTTP status>"``.

What is asserted does not depend on how fast the machine is: the loop runs for ``seconds`` and
then on until the worker has completed *every* kind of operation at least once (bounded by
``cap_seconds``, a failure if reached), and the rotator runs until every worker has stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

DELETED = "<deleted>"
KINDS = ("put", "list", "get", "edit", "restore", "rm", "otp")
OTP_PATH = "shared/otp"
OTP_SEED = "JBSWY3DPEHPK3PXP"

Adapter = Callable[..., tuple[str, Any, str]]


def run_worker(name: str, do: Adapter, seconds: float, cap_seconds: float) -> dict:
    """Returns ``{"acked": {path: value or DELETED}, "bad": [...], "done": [kinds], "ops": n}``."""
    start = time.monotonic()
    history: dict[str, dict[int, str | None]] = {}  # path -> version -> value (None: delete marker)
    acked: dict[str, str] = {}
    bad: list = []
    done: set[str] = set()
    i = ops = 0

    def live(path: str) -> bool:
        return acked.get(path, DELETED) != DELETED

    def stored(path: str, result: Any, value: str | None) -> None:
        history.setdefault(path, {})[int(result["version"])] = value
        acked[path] = DELETED if value is None else value

    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds and done.issuperset(KINDS):
            break
        if elapsed >= cap_seconds:
            bad.append(["coverage", sorted(set(KINDS) - done), f"not all done in {cap_seconds} s"])
            break
        i += 1
        path = f"{name}/r{i % 3}"
        step = i % 8
        value = f"value {name}-{i}\n\twith bytes \u00e9\r\n\x00 end\r"
        kind = None
        if step in (0, 1) or (step == 4 and not live(path)):
            kind = "put"
            outcome, result, err = do("put", path, value=value)
            if outcome == "ok":
                stored(path, result, value)
        elif step == 2:
            kind = "list"
            outcome, result, err = do("list", path)
        elif step == 3 and path in acked:
            kind = "get"
            outcome, result, err = do("get", path)
            if acked[path] == DELETED:
                if outcome != "not_found":
                    bad.append(["get-deleted", path, outcome, err])
                outcome = "ok"
            elif outcome == "ok" and result != acked[path]:
                bad.append(["get-value", path, result, acked[path]])
        elif step == 4:
            kind = "edit"
            outcome, result, err = do("edit", path, value=value)
            if outcome == "ok":
                stored(path, result, value)
        elif step == 5 and path in history:
            current = max(history[path])
            earlier = [v for v, text in history[path].items() if v < current and text is not None]
            if not earlier:
                continue
            kind = "restore"
            version = max(earlier)
            outcome, result, err = do("restore", path, version=version)
            if outcome == "ok":
                stored(path, result, history[path][version])
        elif step == 6 and live(path):
            kind = "rm"
            outcome, result, err = do("rm", path)
            if outcome == "ok":
                stored(path, result, None)
        elif step == 7:
            kind = "otp"
            outcome, result, err = do("otp", OTP_PATH)
            if outcome == "ok" and not (isinstance(result, str) and len(result) == 6 and result.isdigit()):
                bad.append(["otp-code", result])
        else:
            continue
        ops += 1
        if outcome == "ok":
            done.add(kind)
        else:
            bad.append([kind, path, outcome, err])
    return {"acked": acked, "bad": bad, "done": sorted(done), "ops": ops}
