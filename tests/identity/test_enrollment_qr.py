"""The enrollment QR code (issue 17): decodes to the otpauth URI on light and on dark terminals,
has a quiet zone, can be written as PNG/SVG, and the URI names the vault's issuer with every
parameter.

The terminal is simulated as a person's would paint the CLI's real output: every character cell
is two modules (half blocks); a cell's colours are the explicit ANSI colours of the output, or
the theme's defaults where the output sets none. The picture is decoded with zxing-cpp, with
inversion off (a phone's scanner meeting an inverted code is what failed on light themes)."""

from __future__ import annotations

import re
import stat
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from tests.helpers import ROOT, run_cli

zxingcpp = pytest.importorskip("zxingcpp")

BLACK, WHITE = 0, 255
THEMES = {"light": {"fg": BLACK, "bg": WHITE}, "dark": {"fg": WHITE, "bg": BLACK}}
_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_FG = {"30": BLACK, "90": 85, "37": 170, "97": WHITE}
_BG = {"40": BLACK, "100": 85, "47": 170, "107": WHITE}


def paint(lines: list[str], theme: str, margin: int = 3) -> tuple[list[list[int]], int, int]:
    """Grey pixels (one per module) of terminal ``lines`` as a terminal of ``theme`` shows them."""
    default = THEMES[theme]
    rows: list[list[int]] = []
    for line in lines:
        fg, bg = default["fg"], default["bg"]
        top: list[int] = []
        bottom: list[int] = []
        pos = 0
        for m in list(_SGR.finditer(line)) + [None]:
            text = line[pos : m.start()] if m else line[pos:]
            for ch in text:
                upper, lower = {"\u2588": (fg, fg), "\u2580": (fg, bg), "\u2584": (bg, fg), " ": (bg, bg)}[ch]
                top.append(upper)
                bottom.append(lower)
            if m is None:
                break
            for code in (m.group(1) or "0").split(";"):
                if code in ("0", ""):
                    fg, bg = default["fg"], default["bg"]
                elif code == "39":
                    fg = default["fg"]
                elif code == "49":
                    bg = default["bg"]
                elif code in _FG:
                    fg = _FG[code]
                elif code in _BG:
                    bg = _BG[code]
            pos = m.end()
        rows += [top, bottom]
    width = max(len(r) for r in rows) + 2 * margin
    canvas = [[default["bg"]] * width for _ in range(margin)]
    for r in rows:
        canvas.append([default["bg"]] * margin + r + [default["bg"]] * (width - margin - len(r)))
    canvas += [[default["bg"]] * width for _ in range(margin)]
    return canvas, width, len(canvas)


def decode(canvas: list[list[int]], width: int, height: int, scale: int = 4) -> list[str]:
    data = bytearray()
    for row in canvas:
        line = bytes(v for v in row for _ in range(scale))
        data += line * scale
    image = memoryview(bytes(data)).cast("B", (height * scale, width * scale))
    found = zxingcpp.read_barcodes(image, try_invert=False, try_rotate=False)
    return [b.text for b in found]


def qr_lines(stdout: str) -> list[str]:
    """The lines of the drawing: those between the URI and the recovery codes that are drawn
    (block characters, or the quiet zone's spaces with their colours)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "otpauth://" in line) + 1
    drawn = [line for line in lines[start:] if "\x1b[" in line or set(line) & set("\u2588\u2580\u2584")]
    assert drawn, stdout
    return drawn


@pytest.fixture
def enrolled(tmp_path):
    """A real ``cvault init --admin`` with a named vault, its human output and QR files."""
    env = {"CVAULT_HOME": str(tmp_path / "v"), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    proc = run_cli(
        "init",
        "--no-passphrase",
        "--key-file",
        str(tmp_path / "k"),
        "--admin",
        "alice",
        "--password-stdin",
        "--name",
        "Acme MSP",
        "--qr-png",
        str(tmp_path / "alice.png"),
        "--qr-svg",
        str(tmp_path / "alice.svg"),
        input="alice-long-password\n",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    uri = re.search(r"otpauth://\S+", proc.stdout).group(0)
    return proc.stdout, uri, tmp_path, env


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_terminal_qr_decodes_on_both_themes(enrolled, theme):
    stdout, uri, _, _ = enrolled
    lines = qr_lines(stdout)
    assert lines
    assert decode(*paint(lines, theme)) == [uri]


def test_the_simulated_terminal_tells_a_theme_dependent_code(enrolled):
    """The same drawing without its explicit colours is inverted on a dark theme and does not
    decode there: the check above can fail."""
    stdout, uri, _, _ = enrolled
    plain = [_SGR.sub("", line) for line in qr_lines(stdout)]
    assert decode(*paint(plain, "light")) == [uri]
    assert decode(*paint(plain, "dark")) == []


def test_quiet_zone_of_four_modules(enrolled):
    stdout, uri, _, _ = enrolled
    canvas, width, height = paint(qr_lines(stdout), "dark", margin=0)
    # the code's own light border: 4 modules on every side (2 character rows at top and bottom)
    for row in canvas[:4] + canvas[-4:]:
        assert set(row) == {WHITE}
    for row in canvas:
        assert set(row[:4]) == set(row[-4:]) == {WHITE}


def test_uri_names_the_vault_and_every_parameter(enrolled):
    _, uri, _, _ = enrolled
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert unquote(parsed.path) == "/Acme MSP:alice"
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    assert query["issuer"] == "Acme MSP"
    assert (query["algorithm"], query["digits"], query["period"]) == ("SHA1", "6", "30")
    assert re.fullmatch(r"[A-Z2-7]{32}", query["secret"])


def test_qr_files_are_private_and_never_overwritten(enrolled):
    _, _, folder, env = enrolled
    png, svg = folder / "alice.png", folder / "alice.svg"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert b"<svg" in svg.read_bytes()
    for path in (png, svg):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # an existing file is refused before anything is enrolled (exit 2, one line)
    again = run_cli(
        "init",
        "--no-passphrase",
        "--key-file",
        str(folder / "k2"),
        "--admin",
        "bob",
        "--password-stdin",
        "--qr-png",
        str(png),
        input="bob-long-password\n",
        env=dict(env, CVAULT_HOME=str(folder / "v2")),
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    assert not (folder / "v2").exists() and not (folder / "k2").exists()


def test_default_issuer_tells_two_vaults_apart(tmp_path):
    uris = []
    for n in (1, 2):
        env = {"CVAULT_HOME": str(tmp_path / f"v{n}"), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
        proc = run_cli(
            "init",
            "--no-passphrase",
            "--key-file",
            str(tmp_path / f"k{n}"),
            "--admin",
            "alice",
            "--password-stdin",
            "--json",
            input="alice-long-password\n",
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        uris.append(
            parse_qs(urlparse(re.search(r"otpauth://[^\"]+", proc.stdout).group(0)).query)["issuer"][0]
        )
    assert uris[0] != uris[1] and all(u.startswith("cvault-") for u in uris)
