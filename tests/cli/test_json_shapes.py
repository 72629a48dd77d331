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
