"""Service mode, client side: :class:`~cli.service_client.client.ServiceVault`, the facade's
surface (:class:`vault.api.VaultAPI`) over HTTPS, built from the registry :mod:`vault.api_spec`.

Never imports ``vault.*`` services, FastAPI or pydantic: only the registry, the errors, the light
record and verify-result types (``tests/cli/test_import_cost.py`` checks it)."""
