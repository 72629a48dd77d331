"""The remote replica: configuration, pull and verify (:mod:`.service`), the outbox drain (:mod:`.outbox`)."""
