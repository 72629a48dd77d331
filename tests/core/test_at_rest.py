"""No plaintext of any record value or path in any file of the vault directory (docs/spec.md §3)."""

import json

from tests.helpers import add_client, grep_tree, operator

SECRET_VALUES = [
    "S3cr3t-Firewall-Pass!",
    "wifi-key-9f8e7d6c5b",
    "token-abcdef-123456",
    "BEGIN OPENSSH FAKE KEY zzz",
    "a note about the CEO's home router",
]
PATHS = ["office/firewall-main", "hq/wifi-guest-net", "cloud/api-token-slot", "unique-note-path"]


def test_no_plaintext_values_or_paths_on_disk(vdir, tmp_path):
    v = vdir.open()
    add_client(v, "acme")
    p = operator()
    v.secrets.put(
        p,
        "acme",
        PATHS[0],
        "access",
        {"password": SECRET_VALUES[0], "api_token": SECRET_VALUES[2], "ssh_private_key": SECRET_VALUES[3]},
    )
    v.secrets.put(p, "acme", PATHS[1], "network", {"wifi_key": SECRET_VALUES[1], "wifi_ssid": "ssid-xyz"})
    v.secrets.put(p, "acme", PATHS[3], "note", {"text": SECRET_VALUES[4]})
    # updates, deletes, a purge, a rotation, an import
    v.secrets.put(p, "acme", PATHS[0], "access", {"password": SECRET_VALUES[0] + "-v2"}, replace=True)
    v.secrets.rm(p, "acme", PATHS[1])
    v.secrets.put(p, "acme", PATHS[2], "access", {"api_token": SECRET_VALUES[2]})
    v.secrets.rm(p, "acme", PATHS[2], purge=True)
    v.clients.rotate_key(p, "acme")
    v.secrets.import_records(
        p,
        "acme",
        [json.dumps({"path": "imported/one", "kind": "note", "fields": {"text": "imported-secret-text"}})],
    )
    # issue 16: tags, custom fields (secret and not), a TOTP seed, edits, restores and a search
    # (which builds and stores the sealed per-client index)
    v.secrets.put(
        p,
        "acme",
        "m365/global-admin",
        "account",
        {
            "username": "ga-unique-user",
            "totp": "JBSWY3DPEHPK3PXPJBSWY3DP",
            "tags": ["tag-unique-vpn"],
            "custom": {
                "custom-name-unique": {"value": "custom-plain-value", "secret": False},
                "Recovery PIN": {"value": "custom-secret-value", "secret": True},
            },
        },
    )
    v.secrets.edit(p, "acme", "m365/global-admin", set_fields={"display_name": "display-unique"})
    v.secrets.restore(p, "acme", "m365/global-admin", version=1)
    assert v.secrets.search(p, "tag-unique")
    # attachments: their bytes and names, on a record with custom fields and tags
    v.secrets.attach(
        p, "acme", "m365/global-admin", b"attached-plaintext-bytes " * 4000, name="att-name-unique.cfg"
    )
    v.secrets.attach(p, "acme", "m365/global-admin", b"second-attached-file", name="second-att.txt")
    v.secrets.detach(p, "acme", "m365/global-admin", name="second-att.txt")
    v.close()  # -wal/-shm may remain; they are checked too when present
    needles = SECRET_VALUES + PATHS + ["ssid-xyz", "imported-secret-text", "imported/one"]
    needles += [
        "m365/global-admin",
        "ga-unique-user",
        "JBSWY3DPEHPK3PXPJBSWY3DP",
        "tag-unique-vpn",
        "custom-name-unique",
        "custom-plain-value",
        "custom-secret-value",
        "display-unique",
        "search 'tag-unique'",
        "attached-plaintext-bytes",
        "att-name-unique",
        "second-attached-file",
        "second-att.txt",
    ]
    for needle in needles:
        for encoding in ("utf-8", "utf-16-le"):
            hits = grep_tree(vdir.home, needle.encode(encoding))
            assert hits == [], f"{needle!r} found in {hits}"
