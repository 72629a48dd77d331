"""The ``cvault`` console script: hand the command to a running agent when it can, else run the CLI.

Decided from ``sys.argv`` and the agent socket before any heavy import (click, cryptography,
sqlite3): ``cvault secret get|list|search`` with an agent running is one Unix-socket round trip,
and the CLI process loads only this module and ``cli.agent_protocol`` (docs/agent.md). Everything
else, and every case the agent declines (no agent, another vault, a prompt needed, ``--copy``,
``CVAULT_NO_AGENT=1``), runs the full CLI in this process exactly as before, so output, exit codes
and ``--json`` shapes are the CLI's own either way: the agent runs the same click commands.
"""

import os
import sys

#: (group, command) pairs the agent serves; each only reads (the agent never prompts)
AGENT_COMMANDS = {("secret", "get"), ("secret", "list"), ("secret", "search")}
#: options that need this process itself (the clipboard tool, a file written or binary output,
#: help text): always the full CLI
_LOCAL_ONLY_OPTIONS = {"--copy", "--attachment", "--out", "-h", "--help", "--version"}
_GLOBAL_WITH_VALUE = {"--home", "--addr", "--profile"}
_GLOBAL_FLAGS = {"--json", "--debug"}
#: the environment a command may depend on, passed to the agent (names only of files, no secrets);
#: the agent replaces exactly these (and CVAULT_*) for each command
ENV_NAMES = {
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "TERM",
    "TZ",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
}


def agent_eligible(argv: list[str]) -> bool:
    """True when ``argv`` is a command the agent serves (global options, then the command)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in _GLOBAL_WITH_VALUE:
            i += 1 if "=" in arg else 2
        elif arg in _GLOBAL_FLAGS:
            i += 1
        else:
            break
    if tuple(argv[i : i + 2]) not in AGENT_COMMANDS:
        return False
    return not any(a.split("=", 1)[0] in _LOCAL_ONLY_OPTIONS for a in argv[i + 2 :])


def run_request_fields(argv: list[str]) -> list[str]:
    """The ``run`` request: cwd, terminal flags, stdout encoding, the environment, then argv."""
    ttys = "".join("1" if _isatty(fd) else "0" for fd in (0, 1, 2))
    env = {k: v for k, v in os.environ.items() if k in ENV_NAMES or k.startswith("CVAULT_")}
    if ttys[1] == "1" and "COLUMNS" not in env:  # the agent cannot ask this terminal its size
        try:
            size = os.get_terminal_size(1)
            env["COLUMNS"], env["LINES"] = str(size.columns), str(size.lines)
        except OSError:
            pass
    encoding = f"{sys.stdout.encoding or 'utf-8'}:{sys.stdout.errors or 'strict'}"
    pairs = [f"{k}={v}" for k, v in env.items()]
    return [os.getcwd(), ttys, encoding, str(len(pairs)), *pairs, *argv]


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def try_agent(argv: list[str]) -> int | None:
    """The command's exit code when the agent ran it (its output written), else None."""
    from cli import agent_protocol

    try:
        fields = run_request_fields(argv)
        code, out, err, fallback = agent_protocol.call("run", fields)
    except (agent_protocol.AgentUnavailable, OSError, ValueError):
        return None
    if fallback:
        return None
    if out:
        sys.stdout.buffer.write(out)
    if err:
        sys.stderr.buffer.write(err)
    return code


def leave(code: int) -> None:
    """Flush stdout and stderr and exit without interpreter teardown (every way out of the
    ``cvault`` process: the agent's answer, :mod:`cli.fastget`, :func:`cli.main.main`). Nothing is
    left to clean up by then, and tearing down the loaded modules would cost ~10 ms on every
    ``cvault secret get`` (docs/performance.md). A closed or broken output is exit 1 at least."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        code = code or 1
    os._exit(code)


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("CVAULT_NO_AGENT") != "1" and agent_eligible(argv):
        code = try_agent(argv)
        if code is not None:
            leave(code)
    # ``secret get --field``/``--json`` without click (cli.fastget): the same read, the same bytes
    from cli.fastget import try_fast

    code = try_fast(argv)
    if code is not None:
        leave(code)
    from cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
