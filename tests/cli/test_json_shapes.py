"""docs/cli.md's ``--json`` shapes are generated from the registry's result schemas
(``python -m cli.json_shapes``): the block is never stale and names every command with --json."""

from __future__ import annotations

from cli import json_shapes


def test_the_json_shapes_block_is_current_and_complete():
    text = json_shapes.doc_path().read_text()
    block = json_shapes.current_block(text)
    assert block is not None and block == json_shapes.render(), "run: python -m cli.json_shapes"
    for command in json_shapes._commands():
        assert f"`{command} --json`" in block or f"`{command}`" in block, command


def test_a_changed_schema_changes_the_block(monkeypatch):
    from vault import api_schemas

    before = json_shapes.render()
    changed = dict(api_schemas.SCHEMAS)
    changed["Attached"] = api_schemas.obj({"client": api_schemas.STR})
    monkeypatch.setattr(api_schemas, "SCHEMAS", changed)
    assert json_shapes.render() != before


def test_the_listing_encoder_writes_exactly_what_json_dumps_writes():
    """cli.text.json_text writes lists of flat objects itself (secret list --json of 100,000
    records): byte for byte json.dumps(indent=2, sort_keys=True, ensure_ascii=False), whatever the
    text (control characters, quotes, non-ASCII, surrogates) and values."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from cli.text import json_text as dumps

    scalars = st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
    values = st.one_of(
        scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(), scalars, max_size=2)
    )
    listings = st.one_of(
        st.lists(st.dictionaries(st.text(), scalars, max_size=6), max_size=6),
        st.lists(st.dictionaries(st.text(), values, max_size=4), max_size=4),
        values,
    )

    # listings whose objects share their keys (the column-by-column path), with every kind of
    # scalar in a column, a float (not written by the fast path) and braces in the key names
    names = st.lists(st.text(alphabet='ab{}"\\\x00\u00e9', max_size=3), min_size=1, max_size=4, unique=True)
    shared = names.flatmap(
        lambda keys: st.lists(
            st.fixed_dictionaries({k: st.one_of(scalars, st.lists(scalars, max_size=3)) for k in keys}),
            min_size=1,
            max_size=6,
        )
    )
    columns = names.flatmap(
        lambda keys: st.lists(
            st.fixed_dictionaries({k: st.one_of(st.text(), st.integers()) for k in keys}),
            min_size=1,
            max_size=6,
        )
    )

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(listings, shared, columns))
    def same(data):
        assert dumps(data) == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)

    same()
    rows = [
        {"path": f"a/{i}", "kind": "access", "version": i, "updated_at": "2026-12-02T20:07:19Z"}
        for i in range(3)
    ]
    assert dumps(rows) == json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=False)
    rows[1] = {**rows[1], "version": True}  # a boolean among integers: still the same bytes
    assert dumps(rows) == json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=False)


def test_the_listing_encoder_writes_one_string_lists_as_json_dumps_does():
    """The column of one-string lists (a search's ``matched``) is written in C: byte for byte
    json.dumps's, also next to the columns that are not (two strings, an int, a subclass of str,
    an empty list), and with text json.dumps escapes."""
    import json

    from cli.text import json_text

    class Name(str):
        pass

    one = [{"m": ["tags"], "p": "a"}, {"m": ['qu"ote\u00e9\x1f\ud800'], "p": "b"}]
    for column in (
        one,
        [*one, {"m": ["tags", "host"], "p": "c"}],
        [*one, {"m": [1], "p": "c"}],
        [*one, {"m": [Name("x")], "p": "c"}],
        [*one, {"m": [], "p": "c"}],
    ):
        assert json_text(column) == json.dumps(column, indent=2, sort_keys=True, ensure_ascii=False)
