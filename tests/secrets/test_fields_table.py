"""vault.records.FIELDS describes each kind once: the pydantic models, the CLI options and the
field roles must agree with it (a field added to one and not the others fails here)."""

from __future__ import annotations

import typing

from vault.records import FIELDS, KINDS, MAIN_SECRET, MULTILINE_FIELDS, cli_fields
from vault.records.validate import _MULTILINE, MODELS


def _base(annotation):
    """int, str or list for a model field's annotation (Optional and Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base(typing.get_args(annotation)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1, annotation
        return _base(args[0])
    if origin is list:
        return list
    if origin is dict:
        return dict
    return annotation


def test_models_match_the_table():
    assert tuple(MODELS) == KINDS
    for kind, fields in FIELDS.items():
        model = MODELS[kind].model_fields
        assert [n for n in model if n != "kind"] == [f.name for f in fields], kind
        for f in fields:
            info = model[f.name]
            expected = {"str": str, "int": int, "list": list, "custom": dict}[f.type]
            assert _base(info.annotation) is expected, (kind, f.name, info.annotation)
            assert info.is_required() == f.required, (kind, f.name)


def test_roles_multiline_and_main_secret():
    assert _MULTILINE == MULTILINE_FIELDS
    for kind, fields in FIELDS.items():
        mains = [f.name for f in fields if f.main]
        assert mains == [MAIN_SECRET[kind]], kind
        assert all(f.secret for f in fields if f.main), kind


def test_cli_options_never_carry_secrets_and_one_option_means_one_field():
    by_option = {}
    for fields in FIELDS.values():
        for f in fields:
            if f.cli is not None:
                assert not f.secret, f  # secret values never come through argv
                assert by_option.setdefault(f.cli, (f.name, f.type)) == (f.name, f.type), f
    assert {f.cli for f in cli_fields()} == set(by_option)


def test_secret_put_offers_exactly_the_tables_options():
    from cli.commands.secret import secret_put

    offered = {opt for p in secret_put.params for opt in p.opts}
    wanted = {f.cli for f in cli_fields()}
    assert wanted <= offered
    secret_names = {f.name for fs in FIELDS.values() for f in fs if f.secret}
    assert not {o.lstrip("-").replace("-", "_") for o in offered} & secret_names


def test_options_are_named_exactly_as_the_stored_fields():
    for fields in FIELDS.values():
        for f in fields:
            if f.cli is not None:
                assert f.cli == "--" + f.name.replace("_", "-"), f
            for alias in f.aliases:
                assert f.cli is not None and alias != f.cli, f


def test_every_kind_has_tags_and_custom_fields_and_totp_where_accounts_live():
    for kind, fields in FIELDS.items():
        names = [f.name for f in fields]
        assert "tags" in names and "custom" in names, kind
    assert {k for k, fs in FIELDS.items() if "totp" in [f.name for f in fs]} == {"account", "access"}
    from vault.records import SEARCH_FIELDS, SECRET_FIELDS

    for kind in FIELDS:
        assert not set(SEARCH_FIELDS[kind]) & SECRET_FIELDS[kind], kind  # never search a secret
        assert "totp" not in SEARCH_FIELDS[kind]
