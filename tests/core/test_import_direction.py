"""The import rule of docs/architecture.md, checked on the source: an upward import fails here.

Every ``import`` and ``from ... import`` of ``vault/`` and ``cli/`` counts, at module level or in a
function (a lazy import is still a dependency); only imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
import fnmatch

from tests.helpers import ROOT

#: module pattern -> layer (first match wins; docs/architecture.md, "The import rule")
LAYERS: list[tuple[str, int]] = [
    ("vault.errors", 0),
    ("vault.clock", 0),
    ("vault.dates", 0),
    ("vault.settings", 0),
    ("vault.names", 0),
    ("vault.principal", 0),
    ("vault.home", 0),
    ("vault.locks", 0),
    ("vault.crypto", 0),
    ("vault.hardening", 0),
    ("vault.tuples", 0),
    ("vault", 0),
    ("vault.blob", 1),
    ("vault.keys", 1),
    ("vault.policy", 1),
    ("vault.records", 1),
    ("vault.records.export", 1),
    ("vault.records.validate", 1),
    ("vault.records.models", 1),
    ("vault.records.importfile", 1),
    ("vault.records.otp", 1),
    ("vault.records.generate", 1),
    ("vault.records.search", 1),
    ("vault.api_spec", 1),
    ("vault.api", 1),
    ("vault.api_schemas", 1),
    ("vault.importers*", 1),
    ("vault.backup.container", 1),
    ("vault.store*", 2),
    ("vault.backends*", 2),
    ("vault.custody.service", 5),
    ("vault.custody*", 2),
    ("vault.backup.service", 5),
    ("vault.backup", 5),
    ("vault.identity", 3),
    ("vault.identity.facts", 3),
    ("vault.identity.totp", 3),
    ("vault.identity.codes", 3),
    ("vault.audit", 3),
    ("vault.audit.service", 5),
    ("vault.audit.*", 3),
    ("vault.sla", 3),
    ("vault.sla.certificate", 3),
    ("vault.context", 4),
    ("vault.identity.*", 5),
    ("vault.records.service", 5),
    ("vault.records.importing", 5),
    ("vault.records.parallel", 5),
    ("vault.clients*", 5),
    ("vault.sync*", 5),
    ("vault.sla.*", 5),
    ("vault.slots*", 5),
    ("vault.maintenance*", 5),
    ("vault.facade", 6),
    ("vault.server*", 7),
]
SERVICE_LAYER = 5


def layer(module: str) -> int:
    for pattern, number in LAYERS:
        if fnmatch.fnmatchcase(module, pattern):
            return number
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def domain(module: str) -> str:
    return module.split(".")[1]


def module_name(path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, imported module) of every import that runs, in source order."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base])
                    base = base.rstrip(".")
                # ``from vault import crypto`` imports the module vault.crypto
                for alias in child.names:
                    found.append(
                        (child.lineno, f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base)
                    )
            visit(child)

    visit(tree)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _sources(top: str):
    return sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def vault_problems(path, found: list[tuple[int, str]]) -> list[str]:
    me = module_name(path)
    problems = []
    for line, target in found:
        where = f"{path.relative_to(ROOT)}:{line}"
        if target.split(".")[0] in ("cli", "click"):
            problems.append(f"{where}: the library imports {target}")
            continue
        if not target.startswith("vault"):
            continue
        if layer(target) > layer(me):
            problems.append(f"{where}: {me} (layer {layer(me)}) imports {target} (layer {layer(target)})")
        elif layer(me) == SERVICE_LAYER == layer(target) and domain(me) != domain(target):
            problems.append(f"{where}: service {me} imports another domain's service {target}")
    return problems


def cli_problems(path, found: list[tuple[int, str]]) -> list[str]:
    me = module_name(path)
    problems = []
    for line, target in found:
        where = f"{path.relative_to(ROOT)}:{line}"
        if target.startswith("vault.server") and me != "cli.commands.serve":
            problems.append(f"{where}: {me} imports the server {target}")
        if me.startswith("cli.service_client") and target.startswith("vault") and layer(target) > 3:
            problems.append(f"{where}: the service client imports {target} (layer {layer(target)})")
    return problems


def test_no_upward_import():
    problems = [p for path in _sources("vault") for p in vault_problems(path, imports(path))]
    problems += [p for path in _sources("cli") for p in cli_problems(path, imports(path))]
    assert problems == []


def test_the_checker_catches_upward_and_sideways_imports():
    """The rule is not vacuous: each kind of violation, in a module that is never written to disk."""
    store = ROOT / "vault" / "store" / "probe.py"
    found = vault_problems(store, imports(store, "def f():\n    from vault.context import VaultContext\n"))
    assert len(found) == 1 and "layer 4" in found[0], found
    sync = ROOT / "vault" / "sync" / "probe.py"
    found = vault_problems(sync, imports(sync, "from vault.records.service import SecretService\n"))
    assert len(found) == 1 and "another domain" in found[0], found
    client = ROOT / "cli" / "service_client" / "probe.py"
    found = cli_problems(client, imports(client, "import vault.context\n"))
    assert len(found) == 1 and "service client" in found[0], found
    lib = ROOT / "vault" / "probe.py"
    assert vault_problems(lib, imports(lib, "import click\n")), "the library imports click"
    typed = vault_problems(
        store,
        imports(store, "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vault.context\n"),
    )
    assert typed == []
