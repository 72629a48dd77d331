"""The facade's services; each receives the shared :class:`vault.context.VaultContext`."""
