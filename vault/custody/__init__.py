"""Custody: the per-client secrets that live outside the vault folder (docs/sla.md section 6).

The key that wraps a client's keys needs the root key *and* the client's current custody secret
``S(c, n)`` (docs/format.md, "custody"). A custodian holds those secrets somewhere a copy of the
vault folder does not reach, and destroys them when a client is shredded or when a record purge
rotates the client's custody version, so a copy or backup of the vault taken before opens nothing
of that client afterwards.

* :mod:`vault.custody.base`: the contract (:class:`~vault.custody.base.Custodian`), the
  stored reference, the destruction receipt, the errors.
* :mod:`vault.custody.local`: the embedded default, a 0600 file outside the vault folder.
* :mod:`vault.custody.keyvault`: Azure Key Vault / Managed HSM over its REST API (requests and
  msal, imported only when that custodian is used).
* :mod:`vault.custody.cache`: the bounded-time in-memory cache of the service.

This package imports nothing heavy: ``cvault secret get`` with the local custodian loads only
:mod:`vault.custody.base` and :mod:`vault.custody.local`.
"""
