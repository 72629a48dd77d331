"""``cvault completion bash|zsh|fish``: the shell's completion script (cli.completion)."""

from __future__ import annotations

import click


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell):
    """Print the completion script for a shell (commands, options, client names, record paths).

    bash: eval "$(cvault completion bash)" in ~/.bashrc; zsh: eval "$(cvault completion zsh)" in
    ~/.zshrc; fish: cvault completion fish > ~/.config/fish/completions/cvault.fish."""
    from click.shell_completion import get_completion_class

    from cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None  # the three shells click ships
    click.echo(cls(cli, {}, "cvault", "_CVAULT_COMPLETE").source())
