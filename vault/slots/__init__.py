"""Unseal slots (SPEC 3): :mod:`.service` lists, adds and removes them."""
