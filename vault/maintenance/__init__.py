"""``cvault doctor`` (:mod:`.service`): the vault checked end to end."""
