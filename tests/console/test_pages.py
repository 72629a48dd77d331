"""Every console page, as each role sees it, in a real browser: answered 200, a screenshot that is
not blank and shows no error text, and an axe-core scan with no serious or critical violation;
at 1280x800 and at a phone's width, in the light and the dark theme; keyboard-only sign-in."""

from __future__ import annotations

import pytest

from tests.console.conftest import build_world

pytestmark = pytest.mark.usefixtures("browser")

#: role -> the pages that person sees
PAGES = {
    "maria": [
        "/clients",
        "/clients?state=active&sort=days_left&dir=desc",
        "/client?name=acme",
        "/approvals",
        "/upcoming?within=90",
        "/account",
    ],
    "rita": ["/audit", "/audit?outcome=ok", "/report", "/verify", "/access"],
    "ada": ["/users", "/user?name=eve", "/approvals"],
    "eve": ["/records", "/record?client=acme&path=office%2Ffirewall"],
    None: ["/login", "/enroll"],
}
ERROR_TEXT = ("Traceback", "internal error", "Internal Server Error", "undefined", "{{", "{%")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = build_world(tmp_path_factory.mktemp("pages"))
    yield w
    w.service.stop()


def serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def check(page, path: str, shots, name: str) -> None:
    response = page.goto(path)
    assert response is not None and response.status == 200, (path, response and response.status)
    text = page.locator("body").inner_text()
    assert page.locator("h1").count() == 1 and page.locator("h1").inner_text().strip(), path
    for bad in ERROR_TEXT:
        assert bad not in text, (path, bad)
    png = page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert len(png) > 5_000, path  # a blank page is a few hundred bytes
    problems = serious(page)
    assert not problems, (path, problems)


def visit(browser, world, tmp_path, pages: dict, scheme: str) -> None:
    for who, paths in pages.items():
        ctx = browser.new_context(
            base_url=world.url,
            ignore_https_errors=True,
            viewport={"width": 1280, "height": 800},
            color_scheme=scheme,
        )
        try:
            if who:
                world.as_user(ctx, who)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            for i, path in enumerate(paths):
                check(page, path, tmp_path, f"{scheme}-{who}-{i}")
            assert not errors, errors  # a CSP violation or a script error shows here
        finally:
            ctx.close()


def test_every_page_renders_and_passes_axe(browser, world, tmp_path):
    visit(browser, world, tmp_path, PAGES, "light")


def test_the_dark_theme_passes_axe(browser, world, tmp_path):
    """One page of each kind in the dark theme (the colours are the stylesheet's variables)."""
    dark = {"maria": ["/clients", "/client?name=acme"], "rita": ["/audit", "/report"], None: ["/login"]}
    visit(browser, world, tmp_path, dark, "dark")


def test_pages_fit_a_phone(browser, world, tmp_path):
    ctx = browser.new_context(
        base_url=world.url, ignore_https_errors=True, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        world.as_user(ctx, "maria")
        page = ctx.new_page()
        for i, path in enumerate(("/clients", "/client?name=acme", "/login")):
            check(page, path, tmp_path, f"phone-{i}")
            # nothing but the tables' own scroll boxes is wider than the screen
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390 + 1, (path, width)
    finally:
        ctx.close()


def test_sign_in_with_the_keyboard_only(browser, world):
    rita = world.members["rita"]
    ctx = browser.new_context(base_url=world.url, ignore_https_errors=True)
    try:
        page = ctx.new_page()
        page.goto("/login")
        assert page.evaluate("document.activeElement.id") == "name"  # autofocus
        page.keyboard.type(rita.name)
        page.keyboard.press("Tab")
        page.keyboard.type(rita.password)
        page.keyboard.press("Tab")
        page.keyboard.type(rita.code())
        page.keyboard.press("Enter")
        page.wait_for_url("**/audit")
        # the first Tab of a page reaches the skip link, whose focus is visible
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
    finally:
        ctx.close()
