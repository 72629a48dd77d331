"""cvault: encrypted client-configuration vault (library).

Import :class:`vault.facade.Vault` for the entry point. This package never imports click and
never prints; the ``cli`` package is the command-line adapter.
"""

__version__ = "0.1.0"
