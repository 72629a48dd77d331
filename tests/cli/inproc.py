"""The real CLI entry point run in-process (``cli.main.run``, the function the console script calls),
for tests that need hundreds or thousands of CLI runs: the same parsing, vault opening, error
handler and exit codes as a subprocess, without ~150 ms of interpreter start-up per run. A few
real subprocess runs stay in every test that uses it (``VaultDir.cli``)."""

from __future__ import annotations

from typing import NamedTuple

from click.testing import CliRunner


class Ran(NamedTuple):
    code: int
    stdout: bytes
    stderr: str


def cvault(env: dict, *argv: str, input: bytes | str | None = None) -> Ran:
    from cli.main import run

    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        code = run(list(argv))
    return Ran(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))
