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

    @settings(max_examples=400, deadline=None)
    @given(listings)
    def same(data):
        assert dumps(data) == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)

    same()
