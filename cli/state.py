"""Per-invocation CLI state: where the vault is, how to unseal it, who is acting, output mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from vault.errors import InvalidInput, VaultSealed


class CliState:
    def __init__(self, home: str | None, addr: str | None, json: bool, debug: bool):
        self.home_arg = home
        self.addr = addr
        self.json = json
        self.debug = debug
        self._vault = None

    @property
    def home(self) -> Path:
        from vault.home import default_home

        return Path(self.home_arg) if self.home_arg else default_home()

    def vault(self, *, unseal: bool = True):
        """Open the vault (checks permissions and schema) and unseal it.

        Unseal order: ``CVAULT_KEY_FILE``; ``CVAULT_PASSPHRASE_FILE``; a hidden passphrase prompt
        when a terminal is attached. Otherwise the vault stays sealed (exit 8)."""
        if self._vault is None:
            from vault.facade import Vault

            self._vault = Vault.open(self.home)
        if unseal and not self._vault.unsealed:
            key_file = os.environ.get("CVAULT_KEY_FILE")
            pass_file = os.environ.get("CVAULT_PASSPHRASE_FILE")
            if key_file:
                self._vault.unseal_key_file(key_file)
            elif pass_file:
                self._vault.unseal_passphrase(read_secret_file(pass_file, "passphrase"))
            elif sys.stdin.isatty():
                self._vault.unseal_passphrase(
                    click.prompt("Vault passphrase", hide_input=True, err=True))
            else:
                raise VaultSealed("vault sealed: set CVAULT_KEY_FILE or CVAULT_PASSPHRASE_FILE, "
                                  "or run in a terminal to type the passphrase")
        return self._vault

    def principal(self):
        from vault.principal import Principal

        return Principal.operator()

    def close(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None


def read_secret_file(path: str | Path, what: str) -> str:
    """Read a secret from a file: the first line, without its newline."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} not found") from None
    except (OSError, UnicodeDecodeError):
        raise InvalidInput(f"{what} file {path} cannot be read") from None
    value = text.splitlines()[0] if text else ""
    if not value:
        raise InvalidInput(f"{what} file {path} is empty")
    return value


def read_stdin_secret(what: str, *, multiline: bool = False) -> str:
    data = sys.stdin.read()
    if not multiline:
        data = data.splitlines()[0] if data else ""
    elif data.endswith("\n"):
        data = data[:-1]
    if not data:
        raise InvalidInput(f"no {what} on standard input")
    return data
