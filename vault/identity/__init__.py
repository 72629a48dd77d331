"""Staff identity (docs/spec.md §5), by concern: :mod:`.facts` (what the policy reads), :mod:`.lockout`,
:mod:`.factors` (password, TOTP, recovery and enrollment codes), :mod:`.sessions`, :mod:`.admin`,
and :mod:`.service` (the facade's ``users``). Light: the ``secret get`` path imports ``facts``."""
