"""Unseal slots (docs/spec.md §3): :mod:`.service` lists, adds and removes them."""
