"""Per-invocation CLI state: where the vault is, how to unseal it, who is acting, output mode."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TypeVar

from vault.errors import InvalidInput, VaultSealed

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from vault.api import VaultAPI
    from vault.principal import Principal

# click is imported where a prompt needs it: ``cvault secret get`` (cli.fastget) runs without it
CommandT = TypeVar("CommandT", bound="click.Command")


class CliState:
    #: the audit origin of this process's sessions (the agent's state says ``agent``)
    origin = "cli"

    def __init__(self, home: str | None, addr: str | None, json: bool, debug: bool):
        self.configure(home=home, addr=addr, json=json, debug=debug)
        self._vault: VaultAPI | None = None
        self._principal: Principal | None = None

    def configure(self, *, home: str | None, addr: str | None, json: bool, debug: bool) -> None:
        """The global options of one command line."""
        self.home_arg = home
        self.addr = addr
        self.json = json
        self.debug = debug

    @property
    def home(self) -> Path:
        from pathlib import Path

        return Path(self.home_dir)

    @property
    def home_dir(self) -> str:
        """The vault folder as a string (opening it for ``secret get`` never loads pathlib)."""
        from vault.home import default_home_dir

        return self.home_arg or default_home_dir()

    def vault(
        self, *, unseal: bool = True, upgrade: bool = False, upgrade_digest: str | None = None
    ) -> VaultAPI:
        """Open the vault (checks permissions and schema) and unseal it.

        Unseal order: ``CVAULT_KEY_FILE``; ``CVAULT_PASSPHRASE_FILE``; a hidden passphrase prompt
        when a terminal is attached. Otherwise the vault stays sealed (exit 8).

        Service mode (``--addr``/``CVAULT_ADDR``): a :class:`cli.service_client.client.ServiceVault`
        with the facade's surface, one HTTPS request per call; the service is unsealed by its
        operator."""
        vault = self._vault
        if vault is None and self.addr:
            from cli.service_client.client import ServiceVault

            vault = self._vault = ServiceVault(self.addr)
        if vault is None:
            from vault.facade import Vault

            vault = self._vault = Vault.open(self.home_dir)
        if unseal and not vault.unsealed:
            key_file = os.environ.get("CVAULT_KEY_FILE")
            pass_file = os.environ.get("CVAULT_PASSPHRASE_FILE")
            # cvault upgrade only (vault.context.upgrade_format), bound to the summary's digest
            how: dict = {"upgrade": True, "upgrade_digest": upgrade_digest} if upgrade else {}
            if key_file:
                vault.unseal_key_file(key_file, **how)
            elif pass_file:
                vault.unseal_passphrase(read_secret_file(pass_file, "passphrase"), **how)
            elif sys.stdin.isatty():
                import click

                vault.unseal_passphrase(click.prompt("Vault passphrase", hide_input=True, err=True), **how)
            else:
                raise VaultSealed(
                    "vault sealed: set CVAULT_KEY_FILE or CVAULT_PASSPHRASE_FILE, "
                    "or run in a terminal to type the passphrase"
                )
        return vault

    def principal(self, *, allow_system: bool = False, system_name: str = "cli") -> Principal:
        """The logged-in user (session token file -> live session in this vault).

        No session: exit 3 "not logged in", unless ``allow_system`` (doctor, unattended sweep and
        sync run by whoever holds the unseal key file), which then acts as ``system:NAME``."""
        if self._principal is not None:
            return self._principal
        from cli.session_file import load_token
        from vault.errors import AuthenticationFailed
        from vault.principal import Principal

        vault = self.vault()
        token, why = load_token(vault.session_scope)
        if token is None:
            if allow_system:
                return Principal.system(system_name)
            raise AuthenticationFailed(why)
        self._principal = vault.users.resume(token, origin=self.origin)
        return self._principal

    def with_stepup(self, operation, totp: str | None = None):
        """Run ``operation(principal)``; if it needs a fresh TOTP (step-up, docs/spec.md §5), verify one
        from ``--totp`` or a prompt (terminal only) and run it once more. The one place in the CLI
        that handles step-up."""
        from vault.errors import StepUpRequired

        principal = self.principal()
        try:
            return operation(principal)
        except StepUpRequired as exc:
            code = totp
            if code is None:
                if not sys.stdin.isatty():
                    raise StepUpRequired(f"{exc.message}; pass --totp CODE") from None
                import click

                code = click.prompt("TOTP code (step-up)", err=True)
            self.vault().users.step_up(principal, code)
        return operation(principal)

    def close(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None
        self._principal = None


def host_only(command: CommandT) -> CommandT:
    """Mark a command or group as acting on the vault's own files: ``cli.main`` refuses it in
    service mode (``--addr``) with one line, exit 2 (docs/service.md)."""
    command.host_only = True  # type: ignore[attr-defined]
    return command


def read_secret_file(path: str | Path, what: str) -> str:
    """Read a secret from a file: the first line, without its newline. Refused (exit 8) when
    the file's group or others may read it (issue 11), as the key file and vault.db are."""
    from vault.home import read_private_file

    try:
        text = read_private_file(path, f"{what} file").decode("utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} not found") from None
    except (OSError, UnicodeDecodeError):
        raise InvalidInput(f"{what} file {path} cannot be read") from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise InvalidInput(f"{what} file {path} is empty")
    return value


def read_stdin_lines(*whats: str) -> list[str]:
    """Several secrets from standard input, one a line, in the order given (``user enroll
    --code-stdin --password-stdin``: the code, then the password)."""
    try:
        data = sys.stdin.read().splitlines()
    except UnicodeDecodeError:
        raise InvalidInput(f"the {whats[0]} on standard input is not UTF-8 text") from None
    out = []
    for i, what in enumerate(whats):
        value = data[i] if i < len(data) else ""
        if not value:
            raise InvalidInput(f"no {what} on standard input (line {i + 1})")
        out.append(value)
    return out


def warn_code_in_argv(what: str, option: str) -> None:
    """A one-time code typed on the command line is in the shell's history and, while the
    command runs, in the process list; if the command fails it stays valid (issue 11)."""
    import click

    click.echo(
        f"cvault: warning: the {what} given with {option} stays valid until it is used, and the "
        "command line may be in your shell history and the process list (use the prompt or "
        f"{option}-stdin)",
        err=True,
    )


def read_stdin_secret(what: str, *, multiline: bool = False) -> str:
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        data = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {what} on standard input is not UTF-8 text") from None
    if not multiline:
        data = data.splitlines()[0] if data else ""
    elif data.endswith("\n"):
        data = data[:-1]
    if not data:
        raise InvalidInput(f"no {what} on standard input")
    return data


def read_password(password_stdin: bool, prompt: str = "Password", *, confirm: bool = False) -> str:
    """A password from standard input (first line) or a hidden prompt; never from argv."""
    if password_stdin:
        return read_stdin_secret("password")
    if not sys.stdin.isatty():
        raise InvalidInput("no password: use --password-stdin or run in a terminal")
    import click

    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
