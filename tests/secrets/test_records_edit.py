"""No silent field loss (issue 16): ``put`` refuses to drop fields without ``replace``; ``edit``
changes only the fields given; ``restore`` brings back any kept version, deleted or not. The
properties run over generated field sets of every kind (custom fields, tags and TOTP seeds too)."""

from __future__ import annotations

import copy
import itertools
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import add_client, clock_at, make_vault, operator
from vault.errors import InvalidInput, NotFound
from vault.records import FIELDS, field_keys

SEEDS = (
    "JBSWY3DPEHPK3PXPJBSWY3DP",
    "otpauth://totp/acme:admin?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=SHA256&digits=8",
)
_text = st.text(alphabet=string.ascii_letters + string.digits + " -_.", min_size=1, max_size=20).filter(
    lambda s: s.strip() == s
)
_VALUES = {
    "site": _text,
    "hostname": _text,
    "addresses": st.lists(st.sampled_from(["10.0.0.1/24", "192.168.1.2/32", "fd00::1/64"]), max_size=2),
    "vlan": st.integers(1, 4094),
    "gateway": st.sampled_from(["10.0.0.1", "192.168.1.254"]),
    "dns_servers": st.lists(st.sampled_from(["1.1.1.1", "9.9.9.9"]), max_size=2),
    "wifi_ssid": _text,
    "wifi_key": st.text(alphabet=string.ascii_letters, min_size=8, max_size=20),
    "notes": st.text(alphabet=string.ascii_letters + "\n\t ", max_size=40),
    "username": _text,
    "display_name": _text,
    "email": st.sampled_from(["a@example.com", "ops@acme.test"]),
    "password": _text,
    "totp": st.sampled_from(SEEDS),
    "mfa_notes": _text,
    "system": _text,
    "url": st.sampled_from(["https://fw.acme.test", "https://x.test:8443/"]),
    "host": _text,
    "port": st.integers(1, 65535),
    "protocol": st.sampled_from(["ssh", "https"]),
    "api_token": _text,
    "ssh_private_key": st.text(alphabet=string.ascii_letters + "\n", min_size=1, max_size=40),
    "text": st.text(alphabet=string.ascii_letters + "\n", min_size=1, max_size=40),
    "tags": st.lists(
        st.sampled_from(["vpn", "Prod", "firewall", "mfa"]), min_size=1, max_size=3, unique=True
    ),
    "custom": st.dictionaries(
        st.sampled_from(["PIN", "Recovery email", "Serial", "licence"]),
        st.fixed_dictionaries({"value": _text, "secret": st.booleans()}),
        min_size=1,
        max_size=3,
    ),
}
REQUIRED = {kind: [f.name for f in fs if f.required] for kind, fs in FIELDS.items()}


def field_sets(kind: str):
    """A valid field set of ``kind``: the required fields, and any subset of the others."""
    names = [f.name for f in FIELDS[kind]]
    return st.fixed_dictionaries(
        {n: _VALUES[n] for n in REQUIRED[kind]},
        optional={n: _VALUES[n] for n in names if n not in REQUIRED[kind]},
    ).map(lambda d: {k: v for k, v in d.items() if v != []})


kinds_and_sets = st.sampled_from(list(FIELDS)).flatmap(
    lambda k: st.tuples(st.just(k), field_sets(k), field_sets(k))
)


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    vd = make_vault(tmp_path_factory.mktemp("edit"), clock=clock_at())
    v = vd.open(clock=clock_at())
    add_client(v, "acme")
    yield v
    v.close()


_paths = (f"p/{n}" for n in itertools.count())
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _get(v, path, version=None):
    return dict(v.secrets.get(operator(), "acme", path, version=version).fields)


@FAST
@given(kinds_and_sets)
def test_put_never_drops_a_field_without_replace(vault, case):
    kind, first, second = case
    path = next(_paths)
    vault.secrets.put(operator(), "acme", path, kind, first)
    stored = _get(vault, path)
    dropped = field_keys(stored) - field_keys(second)
    if dropped:
        with pytest.raises(InvalidInput) as refused:
            vault.secrets.put(operator(), "acme", path, kind, second)
        for name in dropped:
            assert name in refused.value.message
        assert _get(vault, path) == stored  # nothing written
        assert vault.secrets.put(operator(), "acme", path, kind, second, replace=True)["version"] == 2
    else:
        vault.secrets.put(operator(), "acme", path, kind, second)
    assert field_keys(_get(vault, path)) == field_keys(second) or not dropped


@FAST
@given(kinds_and_sets, st.data())
def test_edit_changes_only_the_fields_given(vault, case, data):
    kind, first, second = case
    path = next(_paths)
    vault.secrets.put(operator(), "acme", path, kind, first)
    before = _get(vault, path)
    removable = sorted(field_keys(before) - set(REQUIRED[kind]) - set(second))
    removable = [n for n in removable if not (n.startswith("custom.") and n[7:] in second.get("custom", {}))]
    unset = data.draw(st.lists(st.sampled_from(removable), unique=True) if removable else st.just([]))
    if not second and not unset:
        return
    vault.secrets.edit(operator(), "acme", path, set_fields=second, unset=unset)
    after = _get(vault, path)
    expected = copy.deepcopy(before)
    for key, value in second.items():
        expected[key] = {**before.get("custom", {}), **value} if key == "custom" else value
    for name in unset:
        if name.startswith("custom."):
            del expected["custom"][name[7:]]
            if not expected["custom"]:
                del expected["custom"]
        else:
            del expected[name]
    assert after == expected
    assert _get(vault, path, version=1) == before


@FAST
@given(kinds_and_sets)
def test_restore_and_undelete_round_trip_every_kind(vault, case):
    kind, first, second = case
    path = next(_paths)
    vault.secrets.put(operator(), "acme", path, kind, first)
    v1 = _get(vault, path)
    vault.secrets.put(operator(), "acme", path, kind, second, replace=True)
    restored = vault.secrets.restore(operator(), "acme", path, version=1)
    assert restored["version"] == 3 and restored["restored_from"] == 1
    assert _get(vault, path) == v1
    vault.secrets.rm(operator(), "acme", path)
    with pytest.raises(NotFound):
        _get(vault, path)
    assert vault.secrets.restore(operator(), "acme", path, version=2)["version"] == 5  # undelete
    assert _get(vault, path) == _get(vault, path, version=2)


def test_edit_refusals_name_the_problem(vault):
    vault.secrets.put(operator(), "acme", "e/one", "account", {"username": "u", "password": "p"})
    with pytest.raises(InvalidInput, match="nothing to change"):
        vault.secrets.edit(operator(), "acme", "e/one")
    with pytest.raises(InvalidInput, match="no field 'email'"):
        vault.secrets.edit(operator(), "acme", "e/one", unset=["email"])
    with pytest.raises(InvalidInput, match="username: Field required"):
        vault.secrets.edit(operator(), "acme", "e/one", unset=["username"])
    with pytest.raises(InvalidInput, match="both set and unset"):
        vault.secrets.edit(operator(), "acme", "e/one", set_fields={"email": "a@b.cd"}, unset=["email"])
    vault.secrets.rm(operator(), "acme", "e/one")
    with pytest.raises(NotFound, match="secret restore"):
        vault.secrets.edit(operator(), "acme", "e/one", set_fields={"email": "a@b.cd"})
    with pytest.raises(InvalidInput, match="delete marker"):
        vault.secrets.restore(operator(), "acme", "e/one", version=2)
    with pytest.raises(NotFound, match="no version 9"):
        vault.secrets.restore(operator(), "acme", "e/one", version=9)


def test_the_refusal_never_names_a_value(vault):
    vault.secrets.put(operator(), "acme", "e/two", "access", {"password": "hunter2-secret", "host": "h1"})
    with pytest.raises(InvalidInput) as refused:
        vault.secrets.put(operator(), "acme", "e/two", "access", {"password": "other-secret"})
    assert "host" in refused.value.message
    assert "hunter2" not in refused.value.message and "h1" not in refused.value.message


def test_import_refuses_to_drop_fields_unless_replace(vault):
    import json

    vault.secrets.put(operator(), "acme", "i/one", "access", {"password": "p", "host": "h"})
    line = json.dumps({"path": "i/one", "kind": "access", "fields": {"password": "q"}})
    with pytest.raises(InvalidInput, match="drop host"):
        vault.secrets.import_records(operator(), "acme", [line])
    vault.secrets.import_records(operator(), "acme", [line], replace=True)
    assert _get(vault, "i/one") == {"password": "q"}


def test_every_edit_and_restore_is_audited(vault):
    vault.secrets.put(operator(), "acme", "a/one", "note", {"text": "t"})
    vault.secrets.edit(operator(), "acme", "a/one", set_fields={"tags": ["x"]})
    vault.secrets.restore(operator(), "acme", "a/one", version=1)
    actions = [r[0] for r in vault.ctx.db.all("SELECT action FROM audit_events WHERE outcome = 'allow'")]
    assert "secret.edit" in actions and "secret.restore" in actions
