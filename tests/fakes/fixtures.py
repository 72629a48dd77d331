"""Fixtures, filled below."""
