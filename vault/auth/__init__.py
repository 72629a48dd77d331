"""Authentication building blocks: TOTP (RFC 6238) and one-time codes. No I/O, no database."""
