"""Each role's main journey in a real browser (chromium), end to end: sign in with a real TOTP
code, do the task, see the audit event; and the refusals (docs/console.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.console.conftest import CLIENTS, sign_in

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.usefixtures("browser")


def test_account_manager_signs_in_sees_the_clients_table_and_renews(page, world):
    maria = world.members["maria"]
    sign_in(page, maria)
    assert page.url.endswith("/clients")
    table = page.locator("#clients")
    assert table.locator("tbody tr").count() == len(CLIENTS)
    acme = table.locator("tbody tr", has_text="acme")
    assert acme.locator("td.engineers").inner_text() == "eve, operator"  # assigned directly
    # through team desk: the path "who can reach what" names (issue 18 item 2)
    assert (
        "eve (team desk)" in table.locator("tbody tr", has_text="globex").locator("td.engineers").inner_text()
    )
    assert re.search(r"\b2\b", acme.locator("td").nth(6).inner_text())  # record count
    page.get_by_label("Engineer").fill("eve")  # reaches acme and umbrella directly, globex via desk
    page.get_by_role("button", name="Filter").click()
    assert sorted(page.locator("#clients tbody tr td:first-child a").all_inner_texts()) == [
        "acme",
        "globex",
        "umbrella",
    ]
    page.get_by_label("Engineer").fill("")
    # filters and sort
    page.get_by_label("Name contains").fill("glob")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#clients tbody tr").count() == 1
    page.goto("/clients?sort=days_left&dir=desc")
    first = page.locator("#clients tbody tr").first.inner_text()
    assert first.startswith("hooli")
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
    with world.other_browser(browser) as a, world.other_browser(browser) as b:
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


def test_engineer_searches_opens_and_reveals_a_secret_with_a_step_up(page, world):
    eve = world.members["eve"]
    sign_in(page, eve)
    assert page.url.endswith("/records")
    listed = page.locator("#records tbody").inner_text()  # every record of her clients
    assert "office/firewall" in listed and "office/wifi" in listed
    search = page.get_by_label("Search: path, type, tags or non-secret fields")
    search.fill("Fw-s3cret")  # a secret value is never searched
    page.get_by_role("button", name="Search").click()
    assert page.locator("#records tbody").inner_text().strip() == "No record matches."
    search.fill("fw.acme.test")  # a non-secret field (the url) is
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#records tbody tr")
    assert rows.count() == 1
    assert world.event(actor="eve", action="secret.search", client="acme", outcome="allow") is not None
    rows.first.get_by_role("link", name="office/firewall").click()
    value = page.locator("#value-password")
    assert "Fw-s3cret!" not in page.content()  # masked until Reveal
    page.get_by_role("button", name="Reveal password").click()
    expect(value).to_have_text("Fw-s3cret!")
    read = world.event(actor="eve", action="secret.get", client="acme")
    assert read is not None and read["outcome"] == "allow" and read["origin"].startswith("web:")
    # the step-up is older than the window: Reveal asks for a fresh code first
    world.set_stepup_age("eve", 3600)
    page.reload()
    page.get_by_role("button", name="Reveal username").click()
    page.get_by_label("Code", exact=True).wait_for()
    page.get_by_label("Code", exact=True).fill(eve.wrong_code())
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#stepup-problem")).to_contain_text("step-up failed")
    page.get_by_label("Code", exact=True).fill(eve.code())
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator("#value-username")).to_have_text("admin")
    assert world.event(actor="eve", action="auth.stepup", outcome="ok") is not None
    assert value.inner_text() != "Fw-s3cret!"  # the reload masked it again


def test_an_engineer_is_refused_the_account_managers_pages(context, world):
    page = world.page_as(context, "eve")
    for path in ("/clients", "/approvals", "/upcoming", "/client?name=acme"):
        response = page.goto(path)
        assert response.status == 403, path
        assert "Refused" in page.locator("h1").inner_text()
        assert "access denied" in page.locator("#problem").inner_text()
    denied = world.event(actor="eve", action="sla.show", outcome="deny")
    assert denied is not None


def test_team_membership_and_team_paths_are_shown(context, world):
    """issue 18 item 2: the admin users page shows each person's teams, the user page the clients
    each team reaches, and the who-can-reach-what matrix the team a yes goes through."""
    page = world.page_as(context, "ada")
    page.goto("/users")
    row = page.locator("#users tbody tr", has_text="eve")
    assert "desk" in row.inner_text()
    page.goto("/user?name=eve")
    assert "desk (globex)" in page.locator("dl.facts").inner_text()
    world.as_user(context, "rita")
    page.goto("/access")
    matrix = page.locator("#matrix").inner_text()
    assert "(team desk)" in matrix
    assert world.event(actor="rita", action="access.view", outcome="allow") is not None


def test_reviewer_filters_the_log_pages_back_and_downloads_an_export(context, world):
    page = world.page_as(context, "rita")
    page.goto("/audit")
    page.get_by_label("Action (e.g. secret.get, auth.*)").fill("auth.*")
    page.get_by_role("button", name="Filter").click()
    actions = page.locator("#events tbody tr td:nth-child(4)").all_inner_texts()
    assert actions and all(a.startswith("auth.") for a in actions)
    page.goto("/audit")
    first_page = page.locator("#events tbody tr td:first-child").all_inner_texts()
    assert len(first_page) == 50
    page.locator("#older").click()
    second = page.locator("#events tbody tr td:first-child").all_inner_texts()
    assert second and int(second[0]) < int(first_page[-1])  # keyset paging, newest first
    with page.expect_download() as got:
        page.get_by_role("button", name="CSV").click()
    path = got.value.path()
    text = Path(path).read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("seq") and ",user.add," in text  # the world was onboarded
    assert world.event(actor="rita", action="audit.export", outcome="allow") is not None
    # the report's charts are SVG drawn on the server; verification shows the key fingerprint
    page.goto("/report")
    assert page.locator("svg.chart").count() == 3
    page.goto("/verify")
    assert "verify" in page.locator("#verdict").inner_text()
    with world.vault() as v:
        fingerprint = v.audit.public_key()["fingerprint"]
    assert page.locator("#fingerprint").inner_text() == fingerprint
    page.goto("/access")
    assert "yes" in page.locator("#matrix").inner_text()


def test_admin_adds_a_user_who_enrolls_and_signs_in(browser, page, world):
    import pyotp

    ada = world.members["ada"]
    sign_in(page, ada)
    assert page.url.endswith("/users")
    page.get_by_label("Name", exact=True).fill("nina")
    page.get_by_label("Engineer").check()
    page.get_by_role("button", name="Add and issue an enrollment code").click()
    assert "second admin must approve" in page.locator("#notice").inner_text()
    assert world.event(actor="ada", action="user.add", outcome="ok") is not None
    # ada cannot approve her own request: the two-person rule is shown where it refuses
    page.get_by_role("button", name="Approve the account (issues the enrollment code)").click()
    assert page.locator("#problem").inner_text().startswith("access denied")
    # a second admin approves and gets the enrollment code to hand over
    with world.other_browser(browser, "hal") as hal:
        hal.goto("/approvals")
        hal.locator("#accounts").get_by_role("link", name="nina").click()
        hal.get_by_role("button", name="Approve the account (issues the enrollment code)").click()
        code = hal.locator("#enrollment-code").input_value()
        assert code
    # nina enrolls in her own browser and signs in with a code from the seed she was shown
    with world.other_browser(browser) as nina:
        nina.goto("/enroll")
        nina.get_by_label("Name").fill("nina")
        nina.get_by_label("Enrollment code (from your admin)").fill(code)
        nina.get_by_label("New password", exact=True).fill("nina's long password 6")
        nina.get_by_label("New password again").fill("nina's long password 6")
        nina.get_by_role("button", name="Enroll").click()
        uri = nina.get_by_label("Authenticator key (otpauth URI)").input_value()
        assert nina.locator(".qr svg").count() == 1
        seed = pyotp.parse_uri(uri).secret
        nina.goto("/login")
        nina.get_by_label("Name").fill("nina")
        nina.get_by_label("Password").fill("nina's long password 6")
        nina.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(seed).now())
        nina.get_by_role("button", name="Sign in").click()
        assert nina.url.endswith("/records")
    # the admin cannot grant herself a role: the rule is shown at the form that asked
    page.goto("/user?name=ada")
    page.get_by_label("Role", exact=True).first.select_option("engineer")
    page.get_by_role("button", name="Grant").click()
    assert "cannot grant themselves" in page.locator("#problem").inner_text()
    assert world.event(actor="ada", action="user.grant", outcome="deny") is not None


def test_early_shred_two_people_then_the_certificate(browser, context, world):
    from vault.principal import Principal

    page = world.page_as(context, "maria")
    page.goto("/client?name=initech")
    page.get_by_label("Reason").last.fill("client asked for erasure")
    page.get_by_role("button", name="Request shred").click()
    page.goto("/approvals")
    row = page.locator("#approvals tbody tr", has_text="initech")
    assert "you asked" in row.inner_text()  # nobody approves their own request
    with world.other_browser(browser, "sam") as sam:
        sam.goto("/approvals")
        sam.get_by_role("button", name="Approve the early shred of initech").click()
        assert "approved" in sam.locator("#notice").inner_text()
    with world.vault() as v:
        v.sla.sweep(Principal.system("test-sweep"))
    page.goto("/client?name=initech")
    page.get_by_role("link", name="View and print").click()
    assert "Shred certificate: initech" in page.locator("h1").inner_text()
    with page.expect_download() as got:
        page.get_by_role("link", name="Download the signed JSON").click()
    doc = json.loads(Path(got.value.path()).read_text(encoding="utf-8"))
    assert doc["certificate"]["client"]["name"] == "initech" and doc["signature"]
    assert world.event(actor="maria", action="sla.certificate", outcome="allow") is not None


def test_account_manager_expires_a_client_and_the_engineer_is_refused_at_once(browser, context, world):
    """Expire with a reason (audited with it); from that moment the engineer assigned to the
    client no longer sees it among her records and opening its record is refused (exit 7's
    status, 409), audited as a denial; the upcoming page shows its shred in the grace period."""
    page = world.page_as(context, "maria")
    page.goto("/client?name=umbrella")
    page.locator("#expire-reason").fill("contract not renewed")
    page.get_by_role("button", name="Expire").click()
    assert "SLA ended" in page.locator("#notice").inner_text()
    assert page.locator(".state").inner_text() == "expired"
    e = world.event(actor="maria", action="sla.expire", client="umbrella", outcome="ok")
    assert e is not None and "contract not renewed" in e["reason"]
    page.goto("/upcoming?within=30")
    row = page.locator("#upcoming tbody tr", has_text="umbrella")
    assert "shred" in row.inner_text()  # the grace period ends within 30 days
    with world.other_browser(browser, "eve") as engineer:
        engineer.goto("/records")
        listed = engineer.locator("#records tbody").inner_text()
        assert "acme" in listed and "umbrella" not in listed
        response = engineer.goto("/record?client=umbrella&path=dc%2Fldap")
        assert response.status == 409, response.status  # the API's status for client_expired
        assert "expired" in engineer.locator("#problem").inner_text()
        assert "Ldap-s3cret!" not in engineer.content()
    denied = world.event(actor="eve", client="umbrella", outcome="deny")
    assert denied is not None and denied["action"].startswith("secret.")


def test_upcoming_expiries_in_30_60_and_90_days(context, world):
    page = world.page_as(context, "maria")
    shown = {}
    for days in ("30", "60", "90"):
        page.goto("/upcoming")
        page.get_by_role("link", name=f"{days} days").click()
        assert page.locator("h1").inner_text() == f"Upcoming in {days} days"
        assert page.locator(f'a[href="/upcoming?within={days}"]').get_attribute("aria-current") == "page"
        shown[days] = page.locator("#upcoming tbody").inner_text()
    assert "acme" in shown["30"] and "acme" in shown["90"]  # its SLA ends in 20 days
    assert all("hooli" not in text for text in shown.values())  # 300 days away
    assert "initech" not in shown["30"]


def test_a_stale_csrf_token_is_refused_in_the_browser(context, world):
    """The form was loaded in one session; the person signed in again (a new session, so a new
    CSRF token) and submits the old page: refused, nothing changes, the page says to reload."""
    page = world.page_as(context, "maria")
    page.goto("/client?name=hooli")
    before = page.locator("dl.facts").inner_text()
    world.as_user(context, "maria")  # a new session cookie replaces the one the form was made for
    page.get_by_label("New SLA end (a date, or +365d)").fill("+900d")
    page.get_by_role("button", name="Renew").click()
    assert page.locator("h1").inner_text() == "Refused"
    assert "reload the page" in page.locator("#problem").inner_text()
    assert world.event(action="sla.renew", client="hooli") is None
    page.goto("/client?name=hooli")
    assert page.locator("dl.facts").inner_text() == before


def test_the_engineer_copies_a_value_and_the_clipboard_clears(browser, world):
    """Copy puts the revealed value on the clipboard; 30 s later (the page's clock, fast-forwarded)
    the clipboard is empty again, and after 60 s the value is masked. Every reveal is one audited
    secret.get."""
    with world.other_browser(browser, "eve") as page:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=world.url)
        page.clock.install()
        reads = len([e for e in world.events() if e["actor"] == "eve" and e["action"] == "secret.get"])
        page.goto("/record?client=acme&path=office%2Fwifi")
        page.get_by_role("button", name="Reveal wifi ssid").click()
        expect(page.locator("#value-wifi_ssid")).to_have_text("acme-office")
        page.get_by_role("button", name="Reveal wifi key").click()
        expect(page.locator("#value-wifi_key")).to_have_text("wifi-key-9")
        page.get_by_role("button", name="Copy wifi key").click()
        expect(page.locator("#copied")).to_contain_text("cleared in 30 seconds")
        assert page.evaluate("navigator.clipboard.readText()") == "wifi-key-9"
        page.clock.run_for(30_000)
        expect(page.locator("#copied")).to_have_text("Clipboard cleared.")
        assert page.evaluate("navigator.clipboard.readText()") == ""
        page.clock.run_for(30_000)
        expect(page.locator("#value-wifi_key")).to_have_text("••••••••")
        after = [e for e in world.events() if e["actor"] == "eve" and e["action"] == "secret.get"]
        assert len(after) == reads + 2  # one audited read per reveal
        assert all(e["outcome"] == "allow" and e["origin"].startswith("web:") for e in after[:2])


def test_admin_manages_a_user_and_the_two_person_rules_show_where_they_refuse(browser, context, world):
    """ada (an admin outside tom's lineage) records his training, grants and revokes a role,
    disables and enables him, unlocks him after five wrong passwords and resets his TOTP; hal,
    who requested tom's account, is refused his training with the rule named at the form."""
    from vault.errors import AuthenticationFailed

    with world.vault() as v:
        for _ in range(5):  # five wrong passwords in a row lock the account
            with pytest.raises(AuthenticationFailed):
                v.users.login("tom", "not tom's password", totp="000000", origin="test")
    page = world.page_as(context, "ada")
    page.goto("/users")
    page.locator("#users").get_by_role("link", name="tom").click()
    assert page.locator("h1").inner_text() == "tom"

    def act(button: str, notice: str) -> None:
        page.get_by_role("button", name=button, exact=True).click()
        assert notice in page.locator("#notice").inner_text(), page.locator("main").inner_text()

    assert page.locator("dl.facts").get_by_text("Locked until").count() == 1
    act("Unlock", "User unlocked.")
    assert world.event(actor="ada", action="user.unlock", outcome="ok") is not None
    page.get_by_label("Valid until (a date or +365d)").fill("+200d")
    act("Record attestation", "Training attestation recorded.")
    page.locator("#grant-role").select_option("security_reviewer")
    act("Grant", "Role granted.")
    assert "Security reviewer" in page.locator("dl.facts").inner_text()
    page.locator("#revoke-role").select_option("security_reviewer")
    act("Revoke", "Role revoked.")
    act("Disable", "User disabled.")
    assert page.locator("#user-state").inner_text() == "disabled"
    act("Enable", "User enabled.")
    assert page.locator("#user-state").inner_text() != "disabled"
    page.get_by_role("button", name="Reset TOTP (new enrollment code)").click()
    assert page.locator("#enrollment-code").input_value()
    for action in (
        "user.train",
        "user.grant",
        "user.revoke",
        "user.disable",
        "user.enable",
        "user.reset_totp",
    ):
        assert world.event(actor="ada", action=action, outcome="ok") is not None, action
    # hal requested tom's account: his lineage may not vouch for tom's training
    with world.other_browser(browser, "hal") as hal:
        hal.goto("/user?name=tom")
        hal.get_by_label("Valid until (a date or +365d)").fill("+365d")
        hal.get_by_role("button", name="Record attestation").click()
        problem = hal.locator("#problem").inner_text()
        assert "hal requested or approved tom's account" in problem and "a third person must" in problem
        assert hal.locator("h1").inner_text() == "tom"  # shown at the form that asked
    assert world.event(actor="hal", action="user.train", outcome="deny") is not None


def test_admin_adds_and_removes_a_team_member_with_the_lineage_rule_shown(browser, context, world):
    """Team membership from the user page: hal, who requested uma's account, may not put her in a
    team (his lineage would make her an engineer with need-to-know), shown at the form; ada may,
    the team's clients appear, and she removes her again. Each change is audited."""
    with world.other_browser(browser, "hal") as hal:
        hal.goto("/user?name=uma")
        hal.locator("#team-add").select_option("desk")
        hal.get_by_role("button", name="Add to team").click()
        problem = hal.locator("#problem").inner_text()
        assert "access denied" in problem and "uma" in problem, problem
        assert hal.locator("h1").inner_text() == "uma"
    assert world.event(actor="hal", action="team.member_add", outcome="deny") is not None
    page = world.page_as(context, "ada")
    page.goto("/user?name=uma")
    page.locator("#team-add").select_option("desk")
    page.get_by_role("button", name="Add to team").click()
    assert "Added to the team" in page.locator("#notice").inner_text()
    assert "desk (globex)" in page.locator("dl.facts").inner_text()
    assert world.event(actor="ada", action="team.member_add", outcome="ok") is not None
    page.locator("#team-rm").select_option("desk")
    page.get_by_role("button", name="Remove from team").click()
    assert "Removed from the team." in page.locator("#notice").inner_text()
    assert "desk" not in page.locator("dl.facts").inner_text()
    assert world.event(actor="ada", action="team.member_rm", outcome="ok") is not None


def test_a_setting_change_needs_a_second_person_and_the_requester_is_refused(browser, context, world):
    """issue 19 item 2 with issue 11 item 4: a pending change of the minimum grace period (`sla
    min-grace`) is in the approvals queue; its requester's own approval is refused by the facade
    (403, audited) with the two-person rule shown at the request's row; a second account manager
    approves it from the console, audited as `sla approve-min-grace` is."""
    with world.vault() as v:
        before = v.ctx.min_grace_days()  # the world's vault was made with its own minimum
    assert before < 21  # so every grace period of the world stays above the new minimum
    page = world.page_as(context, "maria")
    page.goto("/approvals")
    assert f"{before} days" in page.locator("#min-grace").inner_text()
    page.get_by_label("New minimum (days)").fill("21")
    page.get_by_role("button", name="Request the change").click()
    assert "second person must approve" in page.locator("#notice").inner_text()
    row = page.locator("#approvals tbody tr", has_text="minimum grace period")
    assert f"{before} -> 21 days" in row.inner_text() and "you asked" in row.inner_text()
    assert world.event(actor="maria", action="sla.set_min_grace", outcome="ok") is not None
    # maria tries anyway: the facade refuses, and the rule is shown at the row that asked
    response_status = []
    page.on("response", lambda r: response_status.append(r.status) if r.url.endswith("/approve") else None)
    row.get_by_role("button", name="Approve the change of the minimum grace period").click()
    page.wait_for_load_state()
    assert response_status == [403]
    refused_row = page.locator("#approvals tbody tr", has_text="minimum grace period")
    problem = refused_row.locator("#problem").inner_text()
    assert problem == "two-person rule: maria made the request: another person must approve it"
    assert f"{before} days" in page.locator("#min-grace").inner_text()  # nothing changed
    denied = world.event(actor="maria", action="sla.approve_min_grace")
    assert denied is not None and denied["outcome"] == "deny" and "two-person rule" in denied["reason"]
    with world.other_browser(browser, "sam") as sam:
        sam.goto("/approvals")
        sam_row = sam.locator("#approvals tbody tr", has_text="minimum grace period")
        assert "you asked" not in sam_row.inner_text() and "-> 21 days" in sam_row.inner_text()
        # review R2, bait-and-switch: maria replaces her request after sam's page showed 21 days;
        # sam's Approve names 21, so it is refused at the row (403, audited) and nothing changes
        page.goto("/approvals")
        page.get_by_label("New minimum (days)").fill("22")
        page.get_by_role("button", name="Request the change").click()
        assert "second person must approve" in page.locator("#notice").inner_text()
        swapped = []
        sam.on("response", lambda r: swapped.append(r.status) if r.url.endswith("/approve") else None)
        sam_row.get_by_role("button", name="Approve the change of the minimum grace period").click()
        sam.wait_for_load_state()
        assert swapped == [403]
        sam_row = sam.locator("#approvals tbody tr", has_text="minimum grace period")
        assert "replaced after you looked" in sam_row.locator("#problem").inner_text()
        assert f"{before} days" in sam.locator("#min-grace").inner_text()
        assert "-> 22 days" in sam_row.inner_text()  # the page now shows what is pending
        refusal = world.event(actor="sam", action="sla.approve_min_grace", outcome="deny")
        assert refusal is not None and "not to 21 days" in refusal["reason"]
        sam_row.get_by_role("button", name="Approve the change of the minimum grace period").click()
        assert "Change approved" in sam.locator("#notice").inner_text()
        assert "22 days" in sam.locator("#min-grace").inner_text()
        assert sam.locator("#approvals tbody tr", has_text="minimum grace period").count() == 0
    approved = world.event(actor="sam", action="sla.approve_min_grace", outcome="ok")
    assert approved is not None and f"{before} -> 22 days (requested by maria)" in approved["reason"]
    with world.vault() as v:
        assert v.ctx.min_grace_days() == 22
