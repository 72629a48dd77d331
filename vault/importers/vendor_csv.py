"""IT Glue and Hudu password exports (CSV) (docs/import.md, "IT Glue", "Hudu").

Both are one row per password with named columns; columns are matched by name (case, spaces and
dashes ignored), never by position, because both tools let people reorder and add columns.

IT Glue ("Account > Export Data", ``passwords.csv``): ``id``, ``organization``, ``name``,
``password_category``, ``resource_type``, ``resource_id``, ``username``, ``password``,
``otp_secret``, ``archived``, ``url``, ``notes`` (the columns of the official account export, as
reproduced by thedxt/IT-Glue-Exporter and read by the ITGlue-Hudu-Migration scripts).

Hudu (password export): the attribute names of Hudu's ``asset_passwords`` resource
(``company_name``, ``name``, ``username``, ``password``, ``otp_secret``, ``url``, ``description``,
``password_type``, ``password_folder_name``, ``passwordable_type``, ``passwordable_id``, ``id``...),
the names the Hudu API and the HuduAPI PowerShell module use; Hudu publishes no column list for
its CSV export, so the reader also accepts the spelled-out headers (``Company``, ``Company Name``,
``Notes``, ``OTP Secret``, ``Folder``).

A column the reader does not know is kept as a *secret* custom field: an unknown column may hold
a secret, and masking a harmless value is the safe mistake.
"""

from __future__ import annotations

from collections.abc import Iterator

from vault.importers._csv import CsvTable, normalise
from vault.importers._reader import Draft, ImportSource, Skip
from vault.importers.model import ImportReport

TRUE = frozenset({"true", "yes", "1", "y"})


class VendorCsvSource(ImportSource):
    """A password CSV with known column roles."""

    #: normalised header -> role (client, title, username, password, totp, url, notes, id, tag,
    #: archived, plain, ignore)
    COLUMNS: dict[str, str] = {}
    REQUIRED: tuple[str, ...] = ("title", "password")

    def _entries(self, report: ImportReport) -> Iterator[Draft | Skip]:
        roles: list[tuple[str, str]] = []

        def check(header: list[str]) -> None:
            seen: dict[str, str] = {}
            for name in header:
                key = normalise(name)
                role = self.COLUMNS.get(key, "secret")
                if key in seen:
                    raise self.fail_file(f"the column {name!r} appears twice")
                seen[key] = role
                roles.append((name, role))
            present = {role for _, role in roles}
            missing = [r for r in self.REQUIRED if r not in present]
            if missing:
                names = {v: k for k, v in reversed(list(self.COLUMNS.items()))}
                wanted = ", ".join(repr(names.get(m, m)) for m in missing)
                raise self.fail_file(f"not a {self.label} passwords export: no {wanted} column")
            unknown = [name for name, role in roles if role == "secret"]
            if unknown:
                report.warnings.append(
                    f"columns kept as secret custom fields: {', '.join(repr(u) for u in unknown)}"
                )

        for row, where, values in CsvTable(self).rows(check):
            yield self._row(row, where, roles, values)

    def _row(self, row: int, where: str, roles: list[tuple[str, str]], values: list[str]) -> Draft:
        by_role: dict[str, str] = {}
        for (_, role), value in zip(roles, values, strict=True):
            if role not in ("plain", "secret", "ignore", "tag") and value != "":
                by_role.setdefault(role, value)
        title = by_role.get("title", "")
        draft = Draft(
            row, where, "row", by_role.get("id") or f"row {row}", title, by_role.get("client"), "access"
        )
        draft.put_short("username", by_role.get("username"), overflow="username")
        draft.put("password", by_role.get("password"))
        draft.put_short("url", by_role.get("url"), overflow="url")
        draft.put("notes", by_role.get("notes"))
        draft.totp = by_role.get("totp")
        for (name, role), value in zip(roles, values, strict=True):
            if role == "tag":
                draft.tags.append(value)
            elif role in ("plain", "secret"):
                draft.custom(name, value, secret=role == "secret")
        if by_role.get("archived", "").strip().lower() in TRUE:
            draft.tags.append("archived")
        return draft


class ITGlueSource(VendorCsvSource):
    format = "itglue"
    label = "IT Glue"
    COLUMNS = {
        "id": "id",
        "organization": "client",
        "organization_name": "client",
        "name": "title",
        "password_category": "tag",
        "password_category_name": "tag",
        "resource_type": "plain",
        "resource_id": "plain",
        "username": "username",
        "password": "password",
        "otp_secret": "totp",
        "archived": "archived",
        "url": "url",
        "notes": "notes",
        "organization_id": "ignore",
        "created_at": "ignore",
        "updated_at": "ignore",
    }


class HuduSource(VendorCsvSource):
    format = "hudu"
    label = "Hudu"
    COLUMNS = {
        "id": "id",
        "company_name": "client",
        "company": "client",
        "name": "title",
        "username": "username",
        "password": "password",
        "otp_secret": "totp",
        "otp": "totp",
        "url": "url",
        "description": "notes",
        "notes": "notes",
        "password_type": "tag",
        "password_folder_name": "tag",
        "password_folder": "tag",
        "folder": "tag",
        "passwordable_type": "plain",
        "passwordable_id": "plain",
        "company_id": "ignore",
        "password_folder_id": "ignore",
        "in_portal": "ignore",
        "slug": "ignore",
        "created_at": "ignore",
        "updated_at": "ignore",
        "archived": "archived",
    }
