"""``vault.users``: the identity service the facade exposes (docs/identity.md).

Composed of the concerns it covers; each lives in its own module of :mod:`vault.identity`."""

from __future__ import annotations

from vault.identity.admin import AdminMixin
from vault.identity.sessions import SessionsMixin


class UserService(SessionsMixin, AdminMixin):
    """Sessions (login, resume, step-up, logout, whoami, passwd), enrollment and administration."""
