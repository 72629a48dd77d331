"""review7 R7-1: a file writer (A4, no key) puts a deeply nested JSON
object in ``meta.settings`` (read before unsealing, unauthenticated) or ``meta.last_sweep``.
``json.loads`` raises RecursionError, which is not the ValueError the strict decoders
(vault.settings.decode_stored, vault.store.meta.last_sweep; 7bcf49d) catch, so the top-level
handler's storage_error turned it into InvalidInput "input nested too deeply" (exit 2): every
command, doctor included, blamed the user's input instead of reporting the edited row (guarantee
48: exit 6, one line). Fixed in the one helper the strict decoders share (vault.settings.loads_stored)."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli
from tests.integrity.test_meta_values import _assert_one_line, _commands, _plant, acme  # noqa: F401

DEEP = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"


def test_deeply_nested_settings_are_exit_6_everywhere(acme):  # noqa: F811
    vdir, env = acme
    _plant(vdir, "settings", "?", (DEEP,))
    for name, result in _commands(vdir, env):
        line = _assert_one_line(result, 6)  # main: 2, "cvault: input nested too deeply"
        assert "integrity failure" in line or name == "doctor", (name, line)


@pytest.mark.parametrize("key", ["last_sweep"])
def test_a_deeply_nested_sweep_record_is_a_doctor_problem(acme, key):  # noqa: F811
    vdir, env = acme
    _plant(vdir, key, "?", ('{"run_at": ' + "[" * 100_000 + "]" * 100_000 + "}",))
    result = run_cli("doctor", env=env)
    _assert_one_line(result, 6)  # main: exit 2 "input nested too deeply", no report at all
    assert "meta row last_sweep is not a value cvault stored" in result.stdout, result.stdout
