"""Each role's main journey in a real browser (chromium), end to end: sign in with a real TOTP
code, do the task, see the audit event; and the refusals (docs/console.md)."""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import sign_in

pytestmark = pytest.mark.usefixtures("browser")


def test_account_manager_signs_in_sees_the_clients_table_and_renews(page, world):
    maria = world.members["maria"]
    sign_in(page, maria)
    assert page.url.endswith("/clients")
    table = page.locator("#clients")
    assert table.locator("tbody tr").count() == 3
    acme = table.locator("tbody tr", has_text="acme")
    assert "eve" in acme.inner_text()  # assigned engineers
    assert re.search(r"\b2\b", acme.locator("td").nth(6).inner_text())  # record count
    # filters and sort
    page.get_by_label("Name contains").fill("glob")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#clients tbody tr").count() == 1
    page.goto("/clients?sort=days_left&dir=desc")
    first = page.locator("#clients tbody tr").first.inner_text()
    assert first.startswith("initech")
    # the login is in the audit log with the console's origin
    login = world.event(actor="maria", action="auth.login", outcome="ok")
    assert login is not None and login["origin"].startswith("web:")
    # renew through the form
    page.goto("/client?name=globex")
    page.get_by_label("New SLA end (a date, or +365d)").fill("+400d")
    page.get_by_role("button", name="Renew").click()
    assert "SLA renewed" in page.locator("#notice").inner_text()
    assert world.event(actor="maria", action="sla.renew", client="globex", outcome="ok") is not None


def test_a_wrong_code_is_refused_and_audited(page, world):
    rita = world.members["rita"]
    sign_in(page, rita, code=rita.wrong_code())
    assert page.url.rstrip("/").endswith("/login")
    assert "wrong user name, password or code" in page.locator("#problem").inner_text()
    e = world.event(actor="rita", action="auth.login", outcome="deny")
    assert e is not None and e["origin"].startswith("web:")


def test_sign_out_everywhere_ends_every_session(browser, world):
    maria = world.members["maria"]
    first = browser.new_context(base_url=world.url, ignore_https_errors=True)
    second = browser.new_context(base_url=world.url, ignore_https_errors=True)
    try:
        a, b = first.new_page(), second.new_page()
        sign_in(a, maria)
        sign_in(b, maria, recovery=maria.recovery_codes[0])  # the recovery-code fallback
        assert b.url.endswith("/clients")
        assert world.event(actor="maria", action="auth.login", reason="password + recovery code*") is not None
        a.goto("/account")
        a.get_by_role("button", name="Sign out everywhere").click()
        assert a.url.endswith("/login")
        b.goto("/clients")  # the other browser's session ended too
        assert b.url.split("?")[0].endswith("/login")
        assert world.event(actor="maria", action="auth.logout", reason="signed out everywhere*") is not None
    finally:
        first.close()
        second.close()
