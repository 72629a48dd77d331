"""The role table of docs/spec.md §6, pair by pair: policy.decide allows exactly what PERMISSIONS says."""

from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import T0, clock_at
from vault import policy
from vault.errors import AccessDenied
from vault.policy import PERMISSIONS, AccountFacts, Action, ClientFacts
from vault.principal import ROLES, SYSTEM_ROLE, Principal

GOOD_ACCOUNT = AccountFacts(training_valid_until=T0 + timedelta(days=30), stepup_at=T0)
GOOD_CLIENT = ClientFacts(name="acme", state="active", assigned=True)


def _decide(role: str, action: Action):
    if role == SYSTEM_ROLE:
        return policy.decide(Principal.system("test"), action, now=T0, client=GOOD_CLIENT)
    principal = Principal(name="u", roles=frozenset({role}))
    return policy.decide(principal, action, now=T0, account=GOOD_ACCOUNT, client=GOOD_CLIENT)


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
@pytest.mark.parametrize("role", [*ROLES, SYSTEM_ROLE])
def test_every_role_action_pair_follows_the_table(role, action):
    decision = _decide(role, action)
    assert decision.allowed == (role in PERMISSIONS.get(action, frozenset())), decision.reason
    if not decision.allowed:
        assert decision.kind == "denied" and "has no role allowed" in decision.reason


def test_table_matches_spec_6_rows():
    """Spot checks of docs/spec.md §6 itself, so a wrong edit of the table is caught by meaning too."""
    secret_actions = [a for a in Action if a.value.startswith("secret.")]
    assert all(PERMISSIONS[a] == {"engineer"} for a in secret_actions)
    assert set(secret_actions) == set(policy.NEED_TO_KNOW)
    user_actions = [a for a in Action if a.value.startswith("user.")]
    # issue 11: account managers record training and re-confirm a reset account (a third person)
    vouching = {Action.USER_TRAIN, Action.USER_CONFIRM}
    assert all(PERMISSIONS[a] == {"admin"} for a in user_actions if a not in vouching)
    assert all(PERMISSIONS[a] == {"admin", "account_manager"} for a in vouching)
    assert (
        PERMISSIONS[Action.CLIENT_ASSIGN]
        == PERMISSIONS[Action.CLIENT_UNASSIGN]
        == {"admin", "account_manager"}
    )
    assert PERMISSIONS[Action.ACCESS_VIEW] == {"admin", "security_reviewer"}
    assert all("admin" not in PERMISSIONS[a] for a in secret_actions)  # admin never reads secrets


def test_roles_are_additive_and_fresh_roles_win():
    both = Principal(name="u", roles=frozenset({"admin", "engineer"}))
    assert policy.decide(both, Action.USER_ADD, now=T0, account=GOOD_ACCOUNT).allowed
    assert policy.decide(both, Action.SECRET_GET, now=T0, account=GOOD_ACCOUNT, client=GOOD_CLIENT).allowed
    # the roles read now (AccountFacts.roles) override the ones carried by the principal
    revoked = AccountFacts(
        training_valid_until=T0 + timedelta(days=1), stepup_at=T0, roles=frozenset({"admin"})
    )
    assert not policy.decide(both, Action.SECRET_GET, now=T0, account=revoked, client=GOOD_CLIENT).allowed


def test_engineer_sees_only_own_clients():
    eng = Principal(name="u", roles=frozenset({"engineer"}))
    other = ClientFacts(name="globex", state="active", assigned=False)
    assert policy.decide(eng, Action.CLIENT_SHOW, now=T0, account=GOOD_ACCOUNT, client=GOOD_CLIENT).allowed
    d = policy.decide(eng, Action.CLIENT_SHOW, now=T0, account=GOOD_ACCOUNT, client=other)
    assert not d.allowed and d.reason == "u is not assigned to globex"
    assert not policy.sees_all_clients(frozenset({"engineer"}))
    assert policy.sees_all_clients(frozenset({"engineer", "security_reviewer"}))


def test_no_operator_principal_left():
    assert not hasattr(Principal, "operator")


# --- the same table through the facade (a sample per role) ----------------------------------------

FACADE_SAMPLE = [
    # (user, call, action)
    ("alice", lambda v, p: v.users.list(p), Action.USER_LIST),
    ("amy", lambda v, p: v.users.list(p), Action.USER_LIST),
    ("bob", lambda v, p: v.users.add(p, "zed", ["engineer"]), Action.USER_ADD),
    ("alice", lambda v, p: v.users.train(p, "carl", T0 + timedelta(days=9)), Action.USER_TRAIN),
    ("amy", lambda v, p: v.clients.add(p, "globex", sla_end=T0 + timedelta(days=9)), Action.CLIENT_ADD),
    ("alice", lambda v, p: v.clients.add(p, "globex", sla_end=T0 + timedelta(days=9)), Action.CLIENT_ADD),
    ("rita", lambda v, p: v.clients.list(p), Action.CLIENT_LIST),
    ("alice", lambda v, p: v.clients.list(p), Action.CLIENT_LIST),
    ("alice", lambda v, p: v.access.assign(p, "acme", "carl"), Action.CLIENT_ASSIGN),
    ("bob", lambda v, p: v.access.assign(p, "acme", "carl"), Action.CLIENT_ASSIGN),
    ("bob", lambda v, p: v.secrets.list(p, "acme"), Action.SECRET_LIST),
    ("amy", lambda v, p: v.secrets.list(p, "acme"), Action.SECRET_LIST),
    ("alice", lambda v, p: v.secrets.list(p, "acme"), Action.SECRET_LIST),
    ("rita", lambda v, p: v.secrets.list(p, "acme"), Action.SECRET_LIST),
    ("rita", lambda v, p: v.access.client_access(p, "acme"), Action.ACCESS_VIEW),
    ("bob", lambda v, p: v.access.client_access(p, "acme"), Action.ACCESS_VIEW),
    ("amy", lambda v, p: v.clients.rotate_key(p, "acme"), Action.CLIENT_ROTATE_KEY),
    ("bob", lambda v, p: v.clients.rotate_key(p, "acme"), Action.CLIENT_ROTATE_KEY),
]


@pytest.mark.parametrize(
    "user,call,action", FACADE_SAMPLE, ids=[f"{u}-{a.value}" for u, _, a in FACADE_SAMPLE]
)
def test_facade_sample_follows_the_table(staff, user, call, action):
    v = staff.vdir.open(clock=clock_at())
    try:
        who = staff.users()[user]
        p = who.principal(v)
        expected = bool(who.roles & PERMISSIONS[action])
        if expected:
            call(v, p)
        else:
            with pytest.raises(AccessDenied) as info:
                call(v, p)
            assert info.value.exit_code == 4 and "has no role allowed" in info.value.message
        last = v.ctx.db.one(
            "SELECT actor, action, outcome FROM audit_events WHERE action = ? ORDER BY seq DESC LIMIT 1",
            (action.value,),
        )
        assert last[0] == user and last[2] in (("allow", "ok") if expected else ("deny",))
    finally:
        v.close()


def test_privilege_changes_are_never_allowed_on_oneself():
    from vault.policy import NOT_ON_ONESELF

    now = T0
    admin = Principal(name="ann", roles=frozenset({"admin", "account_manager"}))
    facts = AccountFacts(roles=admin.roles)
    for action in NOT_ON_ONESELF:
        assert not policy.decide(admin, action, now=now, account=facts, subject="ann").allowed
        assert policy.decide(admin, action, now=now, account=facts, subject="bob").allowed


def test_identity_doc_holds_the_generated_permission_table():
    """docs/identity.md's table is `python -m cli.permissions` output: regenerate it after a change."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "identity.md").read_text()
    assert policy.permission_table() in doc
