"""What the code and the documentation point at exists: every repository file a document names,
every numbered section a reference names ("docs/spec.md §5", "docs/sla.md section 6"), and no bare
reference to the product specification outside the repository (it lives in docs/spec.md)."""

import re

from tests.helpers import ROOT

PATH = re.compile(r"`((?:vault|cli|tests|bench)/[A-Za-z0-9_/.-]+\.(?:py|sql|md|json))`")
#: paths a document names before the file lands (doc name, path); empty when nothing is pending
PENDING: set[tuple[str, str]] = set()

#: "docs/spec.md §5, §6", "format.md section 2", "sla.md sections 3 and 5", "[sla.md](sla.md) §6"
SECTION_REF = re.compile(
    r"(?:docs/)?\b([a-z][a-z0-9_-]*\.md)(?:\]\([^)\s]*\))?,? (?:§ ?|sections? )"
    r"(\d+(?:\.\d+)?[a-z]?(?:(?:, | and | or |-)(?:§ ?)?\d+(?:\.\d+)?[a-z]?\b)*)"
)
SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)?[a-z]?")
#: a numbered heading: "## 4a. Backup file", "## 6. Copies ...", "### 2.1 Unseal slots"
HEADING = re.compile(r"^#{1,6} (\d+(?:\.\d+)?[a-z]?)\.?\s", re.MULTILINE)
#: the old, out-of-tree form: "SPEC 5", "SPEC section 7"
BARE_SPEC = re.compile(r"\bSPEC(?: section)? ?§? ?\d")

TEXT_SUFFIXES = {".py", ".md", ".sql", ".toml", ".json", ".txt", ".cfg", ".yaml", ".yml", ".html"}


def _text_files():
    roots = [ROOT / d for d in ("vault", "cli", "tests", "bench", "docs", ".ci")]
    files = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "pyproject.toml"]
    for root in roots:
        if root.is_dir():
            files.extend(p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    return [p for p in sorted(files) if "__pycache__" not in p.parts and p.exists()]


def test_paths_named_in_the_docs_exist():
    missing = []
    for doc in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "SECURITY.md"]:
        for path in PATH.findall(doc.read_text(encoding="utf-8")):
            if not (ROOT / path).exists() and (doc.name, path) not in PENDING:
                missing.append(f"{doc.name}: {path}")
    assert not missing, missing


def test_every_section_reference_names_an_existing_section():
    headings = {
        doc.name: set(HEADING.findall(doc.read_text(encoding="utf-8")))
        for doc in (ROOT / "docs").glob("*.md")
    }
    wrong, checked = [], 0
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in SECTION_REF.finditer(text):
            doc, numbers = match.group(1), SECTION_NUMBER.findall(match.group(2))
            if doc not in headings:
                if doc in {"README.md", "SECURITY.md"} or doc.startswith("docs"):
                    wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)!r}: no docs/{doc}")
                continue
            for number in numbers:
                checked += 1
                if number not in headings[doc]:
                    wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)!r}: no section {number}")
    assert not wrong, wrong
    assert checked > 100  # the references are really found (today: about 150)


def test_no_bare_spec_reference_remains():
    """The specification is docs/spec.md; "SPEC N" pointed at a file outside the repository."""
    this = ROOT / "tests" / "core" / "test_docs_references.py"
    bare = []
    for path in _text_files():
        if path == this:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if BARE_SPEC.search(line):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, bare


def test_the_spec_has_every_section_and_a_changes_table():
    text = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    assert set(HEADING.findall(text)) >= {str(n) for n in range(1, 13)}
    assert "\n## Changes\n" in text


def test_the_checks_catch_what_they_look_for():
    """The patterns match the forms they exist for (a typo in a regex would pass everything)."""
    assert BARE_SPEC.search("as SPEC 7 says") and BARE_SPEC.search("SPEC section 3")
    assert not BARE_SPEC.search("SPECIAL = 3")
    refs = [
        (m.group(1), SECTION_NUMBER.findall(m.group(2)))
        for m in SECTION_REF.finditer(
            "docs/spec.md §5, §6; format.md section 2; sla.md sections 3 and 5; [sla.md](sla.md) §6"
        )
    ]
    assert refs == [("spec.md", ["5", "6"]), ("format.md", ["2"]), ("sla.md", ["3", "5"]), ("sla.md", ["6"])]
