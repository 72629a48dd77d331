"""cvault backups (docs/sla.md section 6; byte format in docs/format.md, "backup file").

* :mod:`vault.backup.container`: the encrypted, chunked, signed file format (streaming, bounded
  memory), independent of the vault.
"""
