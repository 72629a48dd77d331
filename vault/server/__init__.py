"""Service mode (docs/spec.md §11): the facade behind an HTTPS JSON API.

:mod:`vault.api_spec` is the light registry of operations shared by the server and the service
client (no FastAPI, no pydantic). This package (FastAPI, uvicorn) is imported only by
``cvault serve``: ``app`` (the application), ``routes`` (derived from the registry), ``errors``
(the one error shape), ``pool`` (the vaults lent to requests), ``limits``, ``jobs`` (background
work) and ``run`` (uvicorn).
"""
