"""Record kinds and their field roles, without pydantic (imported on the read path and by the CLI)."""

KINDS = ("network", "account", "access", "note")
#: the field a hidden prompt, --from-stdin or --file fills for each kind (SPEC 10)
MAIN_SECRET = {"note": "text", "access": "password", "account": "password", "network": "wifi_key"}
#: fields whose values are secrets
SECRET_FIELDS = {
    "note": frozenset({"text"}),
    "access": frozenset({"password", "api_token", "ssh_private_key"}),
    "account": frozenset({"password"}),
    "network": frozenset({"wifi_key"}),
}
#: fields that may span several lines
MULTILINE_FIELDS = frozenset({"notes", "text", "ssh_private_key", "mfa_notes"})
