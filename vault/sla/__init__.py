"""SLA lifecycle and crypto-shredding (docs/spec.md §7; docs/sla.md).

* :mod:`vault.sla.service` -- ``show``, ``renew``, ``expire``, early-shred request/approval,
  ``upcoming``, the sweep and certificates: the facade's ``vault.sla``.
* :mod:`vault.sla.shred` -- the persisted, resumable shred state machine of one client.
* :mod:`vault.sla.certificate` -- the signed shred certificate: canonical encoding, signing input,
  offline verification (needs only the certificate file and the audit public key).
"""
