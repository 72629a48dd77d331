"""Clients (:mod:`.service`: create, list, show, rotate keys) and need-to-know (:mod:`.access`)."""
