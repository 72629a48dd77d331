"""Every console page, as each role sees it, in a real browser: answered 200, a screenshot that is
not blank and shows no error text, and an axe-core scan with no serious or critical violation;
at 1280x800 and at a phone's width, in the light and the dark theme; keyboard-only sign-in."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("browser")

#: role -> the pages that person sees
PAGES = {
    "maria": [
        "/clients",
        "/clients?state=active&sort=days_left&dir=desc",
        "/client?name=acme",
        "/approvals",
        "/upcoming?within=90",
        "/certificate?name=stark",
        "/account",
    ],
    "rita": ["/audit", "/audit?outcome=ok", "/report", "/verify", "/access"],
    "ada": ["/users", "/user?name=eve", "/user?name=uma", "/approvals"],
    "eve": [
        "/records",
        "/records?q=wifi",
        "/record?client=acme&path=office%2Ffirewall",
        "/record?client=acme&path=office%2Fwifi",
        "/clients",  # the refusal page (403)
    ],
    None: ["/login", "/enroll"],
}
#: one page of each template, scanned in the dark theme too (what differs between pages is their
#: components; the colours are one set of variables)
DARK_PAGES = {
    "maria": ["/clients", "/client?name=acme", "/approvals", "/upcoming", "/certificate?name=stark"],
    "rita": ["/audit", "/report", "/verify", "/access"],
    "ada": ["/users", "/user?name=eve"],
    "eve": ["/records", "/record?client=acme&path=office%2Ffirewall", "/clients"],
    None: ["/login", "/enroll"],
}
ERROR_TEXT = ("Traceback", "internal error", "Internal Server Error", "undefined", "{{", "{%")


#: the pages that answer something else than 200 (a refusal is a page too)
STATUS = {("eve", "/clients"): 403}
#: what changes with the theme is colour; with the width, what scrolls and the viewport: the
#: light run scans every rule, the dark and phone runs the rules those can change
DARK_RULES = ["color-contrast", "link-in-text-block"]
PHONE_RULES = ["color-contrast", "scrollable-region-focusable", "meta-viewport"]


def serious(page, rules: list[str] | None = None) -> list[str]:
    """The serious and critical axe-core violations of the page as it is now (axe is injected
    once per document)."""
    from axe_playwright_python.sync_playwright import Axe

    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(Axe().axe_script)
    options: dict = {"resultTypes": ["violations"]}
    if rules:
        options["runOnly"] = {"type": "rule", "values": rules}
    results = page.evaluate("options => axe.run(document, options)", options)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def check(page, path: str, shots, name: str, *, status: int = 200, rules: list[str] | None = None) -> None:
    response = page.goto(path)
    assert response is not None and response.status == status, (path, response and response.status)
    text = page.locator("body").inner_text()
    assert page.locator("h1").count() == 1 and page.locator("h1").inner_text().strip(), path
    for bad in ERROR_TEXT:
        assert bad not in text, (path, bad)
    png = page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert len(png) > 5_000, path  # a blank page is a few hundred bytes
    problems = serious(page, rules)
    assert not problems, (path, problems)


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


@pytest.mark.parametrize("who", list(PAGES), ids=lambda w: w or "signed-out")
def test_every_page_renders_and_passes_axe_in_both_themes(browser, world, tmp_path, who):
    """Each page of the role at 1280x800: 200 (or its refusal), one h1, no error text, a
    screenshot that is not blank, no serious or critical axe violation; then the same document
    in the dark theme (the system setting, emulated): another background, and the colour rules
    of axe pass there too (a page of each template: the colours are one set of variables)."""
    ctx = browser.new_context(
        base_url=world.url, ignore_https_errors=True, viewport={"width": 1280, "height": 800}
    )
    try:
        if who:
            world.as_user(ctx, who)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        for i, path in enumerate(PAGES[who]):
            check(page, path, tmp_path, f"{who}-{i}", status=STATUS.get((who, path), 200))
            if path in DARK_PAGES[who]:
                light = background(page)
                page.emulate_media(color_scheme="dark")
                assert background(page) != light, path
                problems = serious(page, DARK_RULES)
                assert not problems, (path, "dark", problems)
                page.emulate_media(color_scheme="light")
        # a CSP violation or a script error shows here (a refused page logs its 403 status)
        errors = [e for e in errors if "403" not in e]
        assert not errors, errors
    finally:
        ctx.close()


def test_pages_fit_a_phone(browser, world, tmp_path):
    ctx = browser.new_context(
        base_url=world.url, ignore_https_errors=True, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        world.as_user(ctx, "maria")
        page = ctx.new_page()
        for i, path in enumerate(("/clients", "/client?name=acme", "/login")):
            check(page, path, tmp_path, f"phone-{i}", rules=PHONE_RULES)
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
