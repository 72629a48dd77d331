"""Service mode (SPEC 11): the facade behind an HTTPS JSON API.

``vault.server.spec`` is the light table of operations shared by the server and the remote CLI
client (no FastAPI, no pydantic). ``vault.server.app`` (FastAPI) and ``vault.server.run``
(uvicorn) are imported only by ``cvault serve``; nothing else may import them (docs/service.md).
"""
