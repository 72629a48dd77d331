"""JSON schemas of the operations' results: the 200 responses of the OpenAPI document.

Each :class:`vault.api_spec.Op` names its result here (``returns="ClientView"``; a trailing ``[]``
means a list of them). Only the server imports this module (the registry stays light for the
service client). ``tests/server/test_openapi.py`` validates the document and every operation's
real answer against these schemas, so a result that changes shape fails there.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "description": "RFC 3339 UTC time"}
STRS: Schema = {"type": "array", "items": STR}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, **extra: Any) -> Schema:
    """An object with these properties (the required ones always present)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": sorted(required),
        **extra,
    }


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


ANY_OBJECT: Schema = {"type": "object"}

_CLIENT = {
    "name": STR,
    "id": STR,
    "state": STR,
    "sla_end": TIME,
    "grace_days": INT,
    "key_version": INT,
    "created_at": TIME,
}
_USER = {
    "name": STR,
    "roles": STRS,
    "state": STR,
    "training_valid_until": nullable(TIME),
    "totp_active": BOOL,
    "created_at": TIME,
    "enrolled_at": nullable(TIME),
    "requested_by": nullable(STR),
    "approved_by": nullable(STR),
    "pending": nullable(obj({"kind": STR, "requested_by": STR, "requested_at": TIME})),
}
_SLA = {
    "client": STR,
    "id": STR,
    "state": STR,
    "sla_end": TIME,
    "grace_days": INT,
    "shred_due": nullable(TIME),
    "shred_request": nullable(ANY_OBJECT),
    "shred": nullable(ANY_OBJECT),
    "certificate_sha256": nullable(STR),
}
_ACCESS_ROW = obj(
    {
        "user": STR,
        "client": STR,
        "can_read": BOOL,
        "reason": STR,
        "roles": STRS,
        "assignment": nullable(ANY_OBJECT),
        "teams": {"type": "array", "items": ANY_OBJECT},
        "via": nullable(STR),
        "training_valid_until": nullable(TIME),
        "sla_state": STR,
        "sla_end": TIME,
        "account": STR,
    }
)
_TEAM_MEMBER = obj({"user": STR, "since": TIME, "by": STR}, {"left_at": TIME, "removed_by": STR})
_PENDING = obj({"put": INT, "delete": INT, "failing": INT, "needs_attention": INT, "oldest": nullable(TIME)})

SCHEMAS: dict[str, Schema] = {
    "Login": obj({"user": STR, "roles": STRS, "expires_at": TIME, "token": STR}),
    "Enrollment": obj({"name": STR, "otpauth_uri": STR, "recovery_codes": STRS, "totp_active": BOOL}),
    "StepUp": obj({"user": STR, "stepup_valid_until": TIME}),
    "LogoutAll": obj({"user": STR, "sessions_ended": INT}),
    "WhoAmI": obj(
        {
            "user": STR,
            "roles": STRS,
            "session_started_at": TIME,
            "session_expires_at": TIME,
            "session_idle_expires_at": TIME,
            "session_absolute_expires_at": TIME,
            "stepup_valid_until": nullable(TIME),
            "training_valid_until": nullable(TIME),
        }
    ),
    "EnrollmentCode": obj(
        {"name": STR, "enrollment_code": STR, "enrollment_expires_at": TIME},
        {"roles": STRS, "needs_current_password": BOOL, "kind": STR, "requested_by": STR, "approved_by": STR},
    ),
    "AccountRequest": obj(
        {"name": STR, "state": STR, "requested_by": STR},
        {
            "roles": STRS,
            "mode": STR,
            "kind": STR,
            "enrollment_code": STR,
            "enrollment_expires_at": TIME,
        },
    ),
    "UserView": obj(_USER),
    "UserDetail": obj(
        {
            **_USER,
            "locked_until": nullable(TIME),
            "consecutive_failures": INT,
            "failures_last_hour": INT,
            "recovery_codes_left": INT,
            "active_sessions": INT,
            "lineage": STRS,
            "creation_mode": nullable(STR),
            "latest_reset": nullable(
                obj(
                    {
                        "kind": STR,
                        "requested_by": STR,
                        "approved_by": nullable(STR),
                        "confirmed_by": nullable(STR),
                    }
                )
            ),
            "assignments": {
                "type": "array",
                "items": obj({"client": STR, "since": TIME, "until": nullable(TIME)}),
            },
        }
    ),
    "UserChange": obj(
        {"name": STR},
        {
            "disabled": BOOL,
            "roles": STRS,
            "unlocked": BOOL,
            "hourly_cap_in_force": BOOL,
            "training_valid_until": TIME,
            "suspended": BOOL,
        },
    ),
    "Assignment": obj({"client": STR, "user": STR}, {"until": nullable(TIME), "ended_at": TIME}),
    "TeamView": obj(
        {"name": STR, "description": STR, "created_at": TIME}, {"members": STRS, "clients": STRS}
    ),
    "TeamDetail": obj(
        {
            "name": STR,
            "description": STR,
            "created_at": TIME,
            "created_by": STR,
            "members": {"type": "array", "items": _TEAM_MEMBER},
            "former_members": {"type": "array", "items": _TEAM_MEMBER},
            "clients": {
                "type": "array",
                "items": obj(
                    {
                        "client": STR,
                        "since": TIME,
                        "by": STR,
                        "until": nullable(TIME),
                        "ended_at": nullable(TIME),
                        "ended": BOOL,
                    }
                ),
            },
        }
    ),
    "TeamRemoved": obj({"name": STR, "removed_at": TIME, "clients_ended": STRS}),
    "TeamMembership": obj({"team": STR, "user": STR}, {"since": TIME, "left_at": TIME, "clients": STRS}),
    "TeamAssignment": obj(
        {"client": STR, "team": STR}, {"until": nullable(TIME), "ended_at": TIME, "members": STRS}
    ),
    "UserTeam": obj({"team": STR, "since": TIME, "clients": STRS}),
    "ContractImport": obj(
        {
            "dry_run": BOOL,
            "rows": {
                "type": "array",
                "items": obj(
                    {
                        "client": STR,
                        "where": STR,
                        "new_sla_end": TIME,
                        "change": STR,
                        "sla_end": nullable(TIME),
                        "state": nullable(STR),
                    }
                ),
            },
            "unknown_clients": STRS,
            "counts": {"type": "object", "additionalProperties": INT},
            "applied": INT,
        }
    ),
    "IntegrationSecret": obj({"name": STR, "secret": STR, "created_at": TIME}),
    "IntegrationView": obj(
        {
            "name": STR,
            "created_at": TIME,
            "created_by": STR,
            "last_event_at": nullable(TIME),
            "events": INT,
        }
    ),
    "IntegrationRemoved": obj({"name": STR, "removed_at": TIME}),
    "ContractEventResult": obj(
        {
            "event_id": STR,
            "integration": STR,
            "client": STR,
            "change": STR,
            "sla_end": TIME,
            "state": STR,
        }
    ),
    "ClientAccess": obj(
        {
            "client": STR,
            "sla_state": STR,
            "sla_end": TIME,
            "at": TIME,
            "users": {"type": "array", "items": _ACCESS_ROW},
        }
    ),
    "UserAccess": obj(
        {
            "user": STR,
            "roles": STRS,
            "at": TIME,
            "can_read": STRS,
            "clients": {"type": "array", "items": _ACCESS_ROW},
        }
    ),
    "ClientView": obj(_CLIENT, {"records": INT}),
    "KeyRotation": obj({"name": STR, "key_version": INT, "records": INT, "fingerprint": STR}),
    "Stored": obj({"client": STR, "path": STR, "kind": STR, "version": INT}, {"restored_from": INT}),
    "OtpCode": obj(
        {
            "client": STR,
            "path": STR,
            "code": STR,
            "seconds_left": INT,
            "period": INT,
            "digits": INT,
            "algorithm": STR,
        }
    ),
    "SecretRecord": obj(
        {
            "client": STR,
            "path": STR,
            "kind": STR,
            "version": INT,
            "fields": ANY_OBJECT,
            "created_at": TIME,
            "created_by": STR,
            "attachments": {
                "type": "array",
                "items": obj({"name": STR, "size": INT, "added_at": TIME, "added_by": STR}),
            },
        }
    ),
    "Attached": obj({"client": STR, "path": STR, "name": STR, "size": INT, "version": INT}),
    "Detached": obj({"client": STR, "path": STR, "name": STR, "version": INT}),
    "Attachment": obj({"client": STR, "path": STR, "name": STR, "size": INT, "version": INT, "data": STR}),
    "RecordListing": obj({"path": STR, "kind": STR, "version": INT, "updated_at": TIME}),
    "RecordListingAll": obj({"client": STR, "path": STR, "kind": STR, "version": INT, "updated_at": TIME}),
    "SearchHit": obj(
        {"client": STR, "path": STR, "kind": STR, "version": INT, "updated_at": TIME, "matched": STRS}
    ),
    "RecordVersion": obj(
        {"version": INT, "deleted": BOOL, "size": INT, "created_at": TIME, "created_by": STR, "current": BOOL}
    ),
    "Removed": obj(
        {"client": STR, "path": STR, "purged": BOOL},
        {"version": INT, "versions_destroyed": INT, "attachments_destroyed": INT, "scrubbed": BOOL},
    ),
    "Imported": obj({"client": STR, "imported": INT}),
    "Export": obj(
        {
            "client": STR,
            "records": {"type": "array", "items": obj({"path": STR, "kind": STR, "fields": ANY_OBJECT})},
        }
    ),
    "SlaView": obj(_SLA, {"cancelled_shred_request": BOOL}),
    "MinGrace": obj(
        {
            "min_grace_days": INT,
            "pending": nullable(obj({"value": INT, "requested_by": STR, "requested_at": TIME})),
            "last_change": nullable(
                obj({"value": INT, "requested_by": STR, "approved_by": STR, "approved_at": TIME})
            ),
        },
        {"state": STR},
    ),
    "Upcoming": obj(
        {
            "client": STR,
            "event": STR,
            "at": TIME,
            "sla_end": nullable(TIME),
            "grace_days": nullable(INT),
            "shred_due": nullable(TIME),
            "state": STR,
        }
    ),
    "ClientOverview": obj(
        {
            "client": STR,
            "state": STR,
            "sla_end": TIME,
            "days_left": INT,
            "grace_days": INT,
            "shred_due": nullable(TIME),
            "engineers": {
                "type": "array",
                "items": obj({"user": STR, "team": nullable(STR)}),
                "description": "who reaches the client now: directly (team null) or through a team",
            },
            "records": INT,
            "shred_request": nullable(
                obj({"requested_by": STR, "requested_at": TIME, "approved_by": nullable(STR)})
            ),
        }
    ),
    "ClientOverviewPage": obj(
        {"total": INT, "offset": INT, "rows": {"type": "array", "items": ref("ClientOverview")}}
    ),
    "TwoPersonRequest": obj(
        {
            "client": nullable(STR),
            "kind": {"type": "string", "enum": ["early_shred", "setting"]},
            "requested_by": STR,
            "requested_at": TIME,
            "reason": STR,
            "approved_by": nullable(STR),
            "approved_at": nullable(TIME),
            "yours": BOOL,
            "cannot_approve": nullable(STR),
        },
        {"setting": STR, "value": INT, "current": nullable(INT)},
    ),
    "Sweep": obj(
        {
            "dry_run": BOOL,
            "due": {"type": "array", "items": obj({"client": STR, "id": STR, "action": STR})},
            "shredded": STRS,
            "failed": {"type": "array", "items": obj({"client": STR, "error": STR})},
            "skipped": nullable(STR),
        }
    ),
    "Certificate": obj(
        {
            "format": STR,
            "certificate": ANY_OBJECT,
            "body": STR,
            "signature": STR,
            "public_key": STR,
            "public_key_fingerprint": STR,
            "live_status": obj({"at": TIME, "remote_deletes_pending": INT, "note": STR}),
        }
    ),
    "PublicKey": obj(
        {
            "public_key": STR,
            "fingerprint": STR,
            "vault_id": STR,
            "verified": BOOL,
            "stored_key_matches": nullable(BOOL),
        }
    ),
    "Recovery": obj({"recovered": BOOL, "first_bad_seq": INT, "problem": STR, "checkpoint_seq": INT}),
    "Checkpoint": obj(
        {
            "type": STR,
            "vault_id": STR,
            "seq": INT,
            "entry_hash": STR,
            "at": TIME,
            "kind": STR,
            "base_seq": nullable(INT),
            "base_hash": nullable(STR),
            "signature": STR,
        },
        {
            "prev": STR,
            "recovery": ANY_OBJECT,
            "unproven": obj({"first_seq": INT, "last_seq": INT}),
            "base_checkpoint": STR,
        },
    ),
    "AuditEvent": obj(
        {
            "seq": INT,
            "at": TIME,
            "actor": STR,
            "action": STR,
            "client": nullable(STR),
            "outcome": STR,
            "reason": nullable(STR),
            "origin": nullable(STR),
            "detail": nullable(STR),
        }
    ),
    "ExportLines": obj(
        {
            "lines": STRS,
            "result": obj({"format": STR, "entries": INT, "head_seq": INT, "file": nullable(STR)}),
        }
    ),
    "VerifyResult": obj(
        {
            "ok": BOOL,
            "problem": nullable(STR),
            "bad_seq": nullable(INT),
            "entries": INT,
            "first_seq": nullable(INT),
            "last_seq": nullable(INT),
            "base_seq": nullable(INT),
            "checkpoints": INT,
            "signed_up_to": nullable(INT),
            "public_key": nullable(STR),
            "warnings": STRS,
            "unproven": {
                "type": "array",
                "items": obj(
                    {
                        "first_seq": INT,
                        "last_seq": INT,
                        "checkpoint": INT,
                        "reason": {"type": "string", "enum": ["recovery", "upgrade"]},
                    }
                ),
            },
        }
    ),
    "Report": obj(
        {
            "window": obj({"since": TIME, "until": TIME, "events": INT}),
            "settings": ANY_OBJECT,
            "access_per_user": {"type": "array"},
            "access_per_client": {"type": "array"},
            "refusals_by_reason": {"type": "array", "items": obj({"reason": STR, "count": INT})},
            "identity": ANY_OBJECT,
            "off_hours_access": {"type": "array"},
            "bursts": {"type": "array"},
            "after_assignment_ended": {"type": "array"},
            "admin_changes": {"type": "array"},
            "shreds": {"type": "array"},
            "separation_of_duties": obj(
                {
                    "single_operator": BOOL,
                    "bootstrap_steps": {
                        "type": "array",
                        "items": obj({"user": STR, "activated_by": STR, "at": TIME}),
                    },
                }
            ),
            "totals": obj(
                {
                    "off_hours_access": INT,
                    "bursts": INT,
                    "after_assignment_ended": INT,
                    "admin_changes": INT,
                    "shreds": INT,
                }
            ),
            "truncated": STRS,
        }
    ),
    "Prune": obj({"pruned": INT, "base_seq": nullable(INT), "before": TIME}, {"checkpoint_seq": INT}),
    "SyncStatus": obj({"remote": nullable(ANY_OBJECT), "pending": _PENDING, "last_error": nullable(STR)}),
    "Push": obj(
        {"uploaded": INT, "deleted": INT, "failed": INT, "errors": STRS, "pending": _PENDING},
        {"skipped": STR},
    ),
    "Pull": obj({"checked": INT, "restored": INT, "missing_remote": STRS, "errors": STRS}),
    "SyncVerify": obj(
        {
            "checked": INT,
            "matching": INT,
            "mismatched": STRS,
            "missing_remote": STRS,
            "pending_upload": STRS,
            "extra_remote": STRS,
            "ok": BOOL,
        }
    ),
    "RemoteConfig": nullable(ANY_OBJECT),
    "Nothing": {"type": "null"},
}


def response_schema(returns: str | None) -> Schema:
    """The 200 schema of an operation's ``returns`` (``"Name"`` or ``"Name[]"``; None: null)."""
    if returns is None:
        return ref("Nothing")
    if returns.endswith("[]"):
        return {"type": "array", "items": ref(returns[:-2])}
    return ref(returns)
