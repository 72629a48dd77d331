"""The light stand-ins on the ``cvault secret get`` path behave as what they replace (issue 20).

``vault.tuples.NamedTuple`` must make the same classes as ``typing.NamedTuple`` and
``vault.policy``'s ``Action``/``AuditEvent`` must behave as ``enum.StrEnum`` wherever cvault uses
them; the CLI's lazily built option sets must give the same commands as before.
"""

from __future__ import annotations

import copy
import json
import pickle
import sqlite3
import typing
from datetime import datetime
from enum import StrEnum

import pytest

from vault import tuples
from vault.policy import Action, AuditEvent


class Plain(tuples.NamedTuple):
    """A documented row."""

    name: str
    when: datetime | None = None
    count: int = 0

    @property
    def shout(self) -> str:
        return self.name.upper()

    @classmethod
    def blank(cls) -> Plain:
        return cls("")


class Typed(typing.NamedTuple):
    """A documented row."""

    name: str
    when: datetime | None = None
    count: int = 0

    @property
    def shout(self) -> str:
        return self.name.upper()

    @classmethod
    def blank(cls) -> Typed:
        return cls("")


CALLS: list[tuple[tuple, dict]] = [
    (("a",), {}),
    (("a", None, 3), {}),
    (("a",), {"count": 2}),
    ((), {"name": "b", "when": datetime(2026, 1, 2)}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_named_tuple_matches_typing(args, kwargs):
    ours, theirs = Plain(*args, **kwargs), Typed(*args, **kwargs)
    assert tuple(ours) == tuple(theirs)
    assert ours == theirs and hash(ours) == hash(theirs)
    assert repr(ours).removeprefix("Plain") == repr(theirs).removeprefix("Typed")
    assert ours._asdict() == theirs._asdict()
    assert ours._replace(count=9) == theirs._replace(count=9)
    assert ours.shout == theirs.shout
    assert isinstance(ours, tuple)
    assert pickle.loads(pickle.dumps(ours)) == ours and type(pickle.loads(pickle.dumps(ours))) is Plain
    assert copy.deepcopy(ours) == ours
    name, when, count = ours
    assert (name, when, count) == (ours.name, ours.when, ours.count)


def test_named_tuple_class_attributes_match_typing():
    assert Plain._fields == Typed._fields
    assert Plain._field_defaults == Typed._field_defaults
    assert Plain.__match_args__ == Typed.__match_args__
    assert Plain.__doc__ == Typed.__doc__ == "A documented row."
    assert Plain.__module__ == __name__ and Plain.__qualname__ == "Plain"
    assert Plain._make(["x", None, 1]) == Typed._make(["x", None, 1])
    assert Plain.blank() == ("", None, 0)
    assert type(Plain.blank()) is Plain


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), (("a", None, 1, 2), {}), (("a",), {"name": "b"}), (("a",), {"other": 1})],
)
def test_named_tuple_refuses_bad_calls_as_typing_does(args, kwargs):
    with pytest.raises(TypeError):
        Typed(*args, **kwargs)
    with pytest.raises(TypeError):
        Plain(*args, **kwargs)


def test_named_tuple_refuses_bad_definitions():
    with pytest.raises(TypeError):

        class Bad(tuples.NamedTuple):  # a field without default after one with
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(AttributeError):

        class Worse(tuples.NamedTuple):
            a: int

            def _asdict(self):  # type: ignore[override]
                return {}

    with pytest.raises(ValueError):
        Plain("a")._replace(nope=1)
    with pytest.raises(TypeError):
        Plain._make(["only one"])


class EAction(StrEnum):
    SECRET_GET = "secret.get"
    SECRET_PUT = "secret.put"


def test_actions_behave_as_str_enum():
    ours, theirs = Action.SECRET_GET, EAction.SECRET_GET
    assert ours == theirs == "secret.get" and hash(ours) == hash(theirs) == hash("secret.get")
    assert str(ours) == str(theirs) and f"{ours}" == f"{theirs}" and f"{ours:>12}" == f"{theirs:>12}"
    assert ours.value == theirs.value and type(ours.value) is str
    assert ours.name == theirs.name == "SECRET_GET"
    assert repr(ours) == repr(theirs).replace("EAction", "Action")
    assert json.dumps({ours: ours}) == json.dumps({theirs: theirs})
    assert isinstance(ours, Action) and isinstance(ours, str)
    assert Action("secret.get") is ours and Action["SECRET_GET"] is ours and Action(ours) is ours
    assert pickle.loads(pickle.dumps(ours)) is ours
    assert copy.copy(ours) is ours and copy.deepcopy(ours) is ours
    assert sqlite3.connect(":memory:").execute("SELECT ?", (ours,)).fetchone() == ("secret.get",)
    with pytest.raises(ValueError):
        Action("secret.nope")
    with pytest.raises(KeyError):
        Action["NOPE"]


def test_members_are_every_constant_in_definition_order():
    source = (Action.__module__, "Action")
    assert source == ("vault.policy", "Action")
    names = [m.name for m in Action]
    assert names[:3] == ["USER_ADD", "USER_LIST", "USER_SHOW"]
    assert len(Action) == len(names) == len(set(names))
    assert all(getattr(Action, n) is m for n, m in zip(names, Action, strict=True))
    assert set(Action).isdisjoint(set(AuditEvent))
    assert AuditEvent.AUTH_LOGIN in list(AuditEvent) and Action.SECRET_GET not in list(AuditEvent)
    assert "auth.login" in AuditEvent and "secret.get" not in AuditEvent


def test_lazy_option_sets_build_the_same_options():
    """put and edit build their shared options on first use, in the order they are declared."""
    from cli.commands.secret import LazyOptionsCommand, secret

    put = secret.commands["put"]
    edit = secret.commands["edit"]
    assert isinstance(put, LazyOptionsCommand) and isinstance(edit, LazyOptionsCommand)
    put_names = [p.name for p in put.params]
    edit_names = [p.name for p in edit.params]
    shared = [n for n in put_names if n in edit_names]
    assert put_names[:4] == ["client", "path", "kind", "replace"]
    for name in ("from_stdin", "value_file", "fields_json", "generate", "length", "charset", "username"):
        assert name in shared
    assert put_names.index("site") < put_names.index("from_stdin") < put_names.index("as_json")
    assert put.params is put.params  # built once


#: modules ``cvault secret get`` (without an agent) must not load: each was measured on the path
#: and made lazy (docs/performance.md, "Where secret get spends its time")
NOT_ON_THE_GET_PATH = {
    "pathlib",  # with urllib.parse and ipaddress: ~16 M instructions, 6 % of the command
    "urllib.parse",
    "ipaddress",
    "vault.records.generate",  # put/edit's options only
    "hashlib",  # OpenSSL's second copy: 12 M instructions
    # secret get --field/--json runs without click (cli.fastget): ~119 M instructions to import,
    # and the ~60 options of the secret commands another 5 M
    "click",
    "click.core",
    "cli.main",
    "cli.commands.secret",
    "cli.output",
    "cli.render",  # the human view's time format is cli.text.when
    "pydantic",  # record validation: writes only
}


def test_secret_get_loads_none_of_the_lazy_modules(tmp_path):
    """A real ``cvault secret get`` process (no agent) on a real vault: none of the modules made
    lazy for issue 20 comes back on the path, and the read still answers."""
    import os
    import sysconfig

    from tests.helpers import ROOT, add_client, cli_modules, make_vault, operator

    vdir = make_vault(tmp_path)
    v = vdir.open()
    try:
        add_client(v, "acme")
        v.secrets.put(operator(), "acme", "office/firewall", "access", {"host": "h", "password": "pw-1"})
    finally:
        v.close()
    # -S: as a regular install runs (the editable install's import hook loads pathlib itself);
    # the source tree and the dependencies come through PYTHONPATH instead
    path = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = vdir.env(CVAULT_NO_AGENT="1", PYTHONPATH=path)
    for extra in (["--field", "password"], ["--json"], []):
        proc, loaded = cli_modules(
            "secret", "get", "acme", "office/firewall", *extra, env=env, python_flags=("-S",)
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        want = {"--field": "pw-1\n", "--json": '"password": "pw-1"', None: "host      h\n"}
        assert want[extra[0] if extra else None] in proc.stdout
        assert "vault.policy" in loaded and "vault.tuples" in loaded  # the read path did run
        assert not loaded & NOT_ON_THE_GET_PATH, loaded & NOT_ON_THE_GET_PATH


def test_secret_import_of_plain_records_does_not_load_pydantic(tmp_path):
    """``secret import`` (and put) of records the fast validation path vouches for never loads
    pydantic and its models (~0.2 s of CPU a process: docs/performance.md, "importfast"); a record
    the fast path is not sure of still gets the model's refusal, naming its line."""
    import json

    from tests.helpers import add_client, cli_modules, make_vault

    vdir = make_vault(tmp_path)
    v = vdir.open()
    try:
        add_client(v, "acme")
    finally:
        v.close()
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(
            json.dumps({"path": f"r/{i}", "kind": "access", "fields": {"host": "h", "port": 22}}) + "\n"
            for i in range(3)
        )
    )
    proc, loaded = cli_modules("secret", "import", "acme", str(good), env=vdir.env(CVAULT_NO_AGENT="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported 3 records" in proc.stdout
    assert "vault.records.validate" in loaded
    assert not {"pydantic", "vault.records.models"} & loaded
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": "r/x", "kind": "access", "fields": {"port": 0}}) + "\n")
    proc, loaded = cli_modules("secret", "import", "acme", str(bad), env=vdir.env(CVAULT_NO_AGENT="1"))
    assert proc.returncode != 0
    assert "line 1: invalid access record: port: Input should be greater than or equal to 1" in proc.stderr
    assert "vault.records.models" in loaded
