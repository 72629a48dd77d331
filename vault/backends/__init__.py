"""Blob storage backends. See :mod:`vault.backends.base` for the contract every backend keeps."""
