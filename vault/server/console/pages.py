"""The console's pages (docs/console.md has the list, by role). Each handler takes a
:class:`vault.server.console.web.Page`, calls the facade as ``page.principal`` and renders a
template; the facade authorizes and audits every call, so a page shows exactly what its user may
see and a refusal is the facade's own (shown with its reason on the error page, 403)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi.responses import Response

from vault.errors import AuthenticationFailed, InvalidInput, NotFound, VaultError, VaultLocked
from vault.server.console import charts, web
from vault.server.console.app import Console, Redirect
from vault.sla.service import OVERVIEW_SORTS as CLIENT_SORTS
from vault.sla.service import SETTING_LABELS, STATES

PAGE_SIZE = 100
AUDIT_PAGE = 50
OUTCOMES = ("allow", "deny", "ok", "error")
EXPORT_TYPES = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "cef": ("text/plain; charset=utf-8", "cef"),
}


def first_page(principal) -> str:
    for role, path in (
        ("account_manager", "/clients"),
        ("security_reviewer", "/audit"),
        ("admin", "/users"),
        ("engineer", "/records"),
    ):
        if role in principal.roles:
            return path
    return "/account"


def download(data: bytes, media_type: str, filename: str) -> Response:
    return Response(
        data, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


def query_string(**values: Any) -> str:
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


def register(c: Console) -> None:
    r = c.render

    # --- sign-in, sign-out, enrollment -------------------------------------------------------------

    def login_form(p: web.Page) -> Response:
        if p.principal is not None:
            raise Redirect(first_page(p.principal))
        return r(p, "login.html", next=web.safe_next(p.arg("next", "/")), error=None, name="")

    def login(p: web.Page) -> Response:
        name = p.form.get("name", "").strip()
        code = p.form.get("code", "").strip()
        recovery = p.form.get("recovery_code", "").strip()
        nxt = web.safe_next(p.form.get("next", "/"))
        try:
            if not name or not p.form.get("password"):
                raise InvalidInput("give your name and password")
            if not code and not recovery:
                raise InvalidInput("give the code from your authenticator app (or a recovery code)")
            result = p.vault.users.login(
                name,
                p.form.get("password", ""),
                totp=None if recovery else code,
                recovery_code=recovery or None,
                origin=p.origin,
            )
        except VaultError as exc:
            from vault.server.console.app import spec

            p.attempt_failed = isinstance(exc, AuthenticationFailed | VaultLocked)
            status = spec.status_for(exc.code, exc.exit_code)
            return r(p, "login.html", status, next=nxt, error=exc.message, name=name[:200])
        p.cookies[web.SESSION_COOKIE] = result.token
        p.cookies[web.PRE_COOKIE] = None
        raise Redirect(nxt if nxt != "/" else first_page(result.principal))

    def logout(p: web.Page) -> Response:
        p.vault.users.logout(p.principal)
        p.cookies[web.SESSION_COOKIE] = None
        raise Redirect("/login")

    def logout_all(p: web.Page) -> Response:
        p.vault.users.logout_all(p.principal)
        p.cookies[web.SESSION_COOKIE] = None
        raise Redirect("/login")

    def enroll_form(p: web.Page) -> Response:
        return r(p, "enroll.html", error=None, done=None, name="")

    def enroll(p: web.Page) -> Response:
        name = p.form.get("name", "").strip()
        try:
            if p.form.get("password", "") != p.form.get("password2", ""):
                raise InvalidInput("the two passwords differ")
            done = p.vault.users.enroll(
                name, p.form.get("code", "").strip(), p.form.get("password", ""), origin=p.origin
            )
        except VaultError as exc:
            p.attempt_failed = isinstance(exc, AuthenticationFailed | VaultLocked)
            return r(p, "enroll.html", 400, error=exc.message, done=None, name=name[:200])
        return r(p, "enroll.html", done=done, qr=charts.qr_svg(done["otpauth_uri"]), error=None, name=name)

    def home(p: web.Page) -> Response:
        raise Redirect(first_page(p.principal))

    def account(p: web.Page) -> Response:
        return r(p, "account.html", me=p.vault.users.whoami(p.principal))

    c.page("/login", login_form, signed_in=False)
    c.page("/login", login, methods=("POST",), signed_in=False, rate_limit="login")
    c.page("/enroll", enroll_form, signed_in=False)
    c.page("/enroll", enroll, methods=("POST",), signed_in=False, rate_limit="login")
    c.page("/logout", logout, methods=("POST",))
    c.page("/logout-all", logout_all, methods=("POST",))
    c.page("/", home)
    c.page("/account", account)

    # --- account managers ---------------------------------------------------------------------------

    def clients(p: web.Page) -> Response:
        """``sla.overview`` filters, sorts and pages in SQL: a page costs the same at 10,000
        clients as at 100 (docs/performance.md)."""
        q = p.arg("q").strip().lower()
        state = p.arg("state")
        state = state if state in STATES else ""
        engineer = p.arg("engineer").strip()
        within = p.arg("within")
        within = within if within in ("30", "60", "90") else ""
        sort = p.arg("sort", "client")
        sort = sort if sort in CLIENT_SORTS else "client"
        desc = p.arg("dir") == "desc"
        wanted = int(p.arg("page", "1")) if p.arg("page", "1").isdigit() else 1

        def fetch(number: int) -> dict:
            return p.vault.sla.overview(
                p.principal,
                name_contains=q,
                state=state,
                engineer=engineer,
                within_days=int(within) if within else None,
                sort=sort,
                descending=desc,
                offset=(number - 1) * PAGE_SIZE,
                limit=PAGE_SIZE,
            )

        number = max(1, min(wanted, 10**6))
        got = fetch(number)
        total = got["total"]
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        if number > pages:  # past the last page (the filters changed): show the last one
            number = pages
            got = fetch(number)
        shown = got["rows"]
        keep = {
            "q": q,
            "state": state,
            "engineer": engineer,
            "within": within,
            "sort": sort,
            "dir": p.arg("dir"),
        }

        def link(**change):
            return "/clients?" + query_string(**{**keep, **change})

        return r(
            p,
            "clients.html",
            rows=shown,
            total=total,
            number=number,
            pages=pages,
            f=keep,
            states=STATES,
            sorts=CLIENT_SORTS,
            link=link,
        )

    def client_page(p: web.Page, name: str, *, error: str | None = None, status: int = 200) -> Response:
        view = p.vault.sla.show(p.principal, name)
        notice = DONE.get(p.arg("done"))
        return r(p, "client.html", status, view=view, name=name, error=error, notice=notice)

    def client_action(what: str):
        def act(p: web.Page) -> Response:
            name = p.query.get("name") or p.form.get("name", "")
            try:
                if what == "renew":
                    grace = p.form.get("grace_days", "").strip()
                    p.vault.sla.renew(
                        p.principal,
                        name,
                        p.form.get("until", "").strip(),
                        grace_days=int(grace) if grace.isdigit() else None,
                    )
                elif what == "expire":
                    p.vault.sla.expire(p.principal, name, reason=p.form.get("reason", ""))
                elif what == "request-shred":
                    p.vault.sla.request_shred(p.principal, name, reason=p.form.get("reason", ""))
            except InvalidInput as exc:
                return client_page(p, name, error=exc.message, status=400)
            raise Redirect("/client?" + query_string(name=name, done=what))

        return act

    def client_get(p: web.Page) -> Response:
        return client_page(p, p.arg("name"))

    def approvals_page(
        p: web.Page, *, refused: dict | None = None, form_error: str | None = None, status: int = 200
    ) -> Response:
        """Every two-person request awaiting someone else: early shreds and setting changes
        (``sla.requests``) and, for admins, accounts awaiting a second admin (``users.list``: a
        pending creation or full reset, or roles suspended until a re-confirmation).
        ``refused``: the request an approval was refused for, with the rule (shown at its row)."""
        rows = p.vault.sla.requests(p.principal)
        accounts = []
        if p.has("admin"):
            accounts = [
                u for u in p.vault.users.list(p.principal) if u.get("pending") or u["state"] == "suspended"
            ]
        return r(
            p,
            "approvals.html",
            status,
            rows=rows,
            accounts=accounts,
            refused=refused,
            form_error=form_error,
            min_grace=p.vault.sla.min_grace(p.principal),
            setting_labels=SETTING_LABELS,
            notice=DONE.get(p.arg("done")),
        )

    def approvals(p: web.Page) -> Response:
        return approvals_page(p)

    def approve(p: web.Page) -> Response:
        """Approve one request of the queue through the facade (``sla.approve_shred``,
        ``sla.approve_min_grace``): the same policy, two-person rule and audit event as the CLI's
        ``sla approve-shred`` / ``sla approve-min-grace``. A refusal (the viewer's own request,
        or the requester's lineage) is shown at the request's row with the rule, 403."""
        kind, client, setting = p.form.get("kind", ""), p.form.get("client", ""), p.form.get("setting", "")
        try:
            if kind == "early_shred":
                p.vault.sla.approve_shred(p.principal, client)
            elif kind == "setting" and setting in APPROVE_SETTING:
                value = p.form.get("value", "").strip()
                if not value.isdigit():
                    raise InvalidInput("choose a request of the queue to approve")
                # the value the page showed: a request replaced since is refused (review R2)
                APPROVE_SETTING[setting](p.vault.sla, p.principal, int(value))
            else:
                raise InvalidInput("choose a request of the queue to approve")
        except VaultError as exc:
            if exc.exit_code not in (2, 4, 5):  # bad input, a refusal, gone meanwhile: at the row
                raise
            refused = {"kind": kind, "client": client, "setting": setting, "message": exc.message}
            return approvals_page(p, refused=refused, status=403 if exc.exit_code == 4 else 400)
        raise Redirect("/approvals?" + query_string(done="approved" if kind == "early_shred" else "setting"))

    def request_min_grace(p: web.Page) -> Response:
        """``sla.request_min_grace`` (``cvault sla min-grace DAYS``): pending until a second
        person approves it from this queue."""
        days = p.form.get("days", "").strip()
        try:
            if not days.isdigit():
                raise InvalidInput("give the new minimum grace period in whole days")
            p.vault.sla.request_min_grace(p.principal, int(days))
        except VaultError as exc:
            if exc.exit_code not in (2, 4):
                raise
            return approvals_page(p, form_error=exc.message, status=403 if exc.exit_code == 4 else 400)
        raise Redirect("/approvals?" + query_string(done="min-grace-requested"))

    def upcoming(p: web.Page) -> Response:
        days = p.arg("within", "30")
        days = days if days in ("30", "60", "90") else "30"
        rows = p.vault.sla.upcoming(p.principal, f"{days}d")
        return r(p, "upcoming.html", rows=rows, days=days)

    def certificate(p: web.Page) -> Response:
        doc = p.vault.sla.certificate(p.principal, p.arg("name"))
        return r(p, "certificate.html", doc=doc, name=p.arg("name"), body=certificate_body(doc))

    def certificate_json(p: web.Page) -> Response:
        name = p.arg("name")
        doc = p.vault.sla.certificate(p.principal, name)
        signed = {k: v for k, v in doc.items() if k != "live_status"}
        data = (json.dumps(signed, indent=2, ensure_ascii=False) + "\n").encode()
        return download(data, "application/json", f"shred-certificate-{safe_file(name)}.json")

    c.page("/clients", clients)
    c.page("/client", client_get)
    for what in ("renew", "expire", "request-shred"):
        c.page(f"/client/{what}", client_action(what), methods=("POST",))
    c.page("/approvals", approvals)
    c.page("/approvals/approve", approve, methods=("POST",))
    c.page("/approvals/request-min-grace", request_min_grace, methods=("POST",))
    c.page("/upcoming", upcoming)
    c.page("/certificate", certificate)
    c.page("/certificate.json", certificate_json)

    # --- security reviewers ---------------------------------------------------------------------------

    def audit(p: web.Page) -> Response:
        f = {k: p.arg(k).strip() for k in ("user", "client", "action", "outcome", "since", "until")}
        before = p.arg("before")
        rows = p.vault.audit.log(
            p.principal,
            user=f["user"] or None,
            client=f["client"] or None,
            action=f["action"] or None,
            outcome=f["outcome"] or None,
            since=f["since"] or None,
            until=f["until"] or None,
            limit=AUDIT_PAGE + 1,
            before=int(before) if before.isdigit() and int(before) > 0 else None,
        )
        rows.reverse()  # newest first
        more = len(rows) > AUDIT_PAGE
        rows = rows[:AUDIT_PAGE]
        older = "/audit?" + query_string(**f, before=rows[-1]["seq"]) if more and rows else None
        newest = "/audit?" + query_string(**f) if before else None
        return r(p, "audit.html", rows=rows, f=f, outcomes=OUTCOMES, older=older, newest=newest)

    def report(p: web.Page) -> Response:
        since = p.arg("since", "30d").strip() or "30d"
        until = p.arg("until").strip() or None
        rep = p.vault.audit.report(p.principal, since=since, until=until)
        reads = p.vault.audit.log(
            p.principal, action="secret.get", outcome="allow", since=since, until=until, limit=50_000
        )
        denials = p.vault.audit.log(p.principal, outcome="deny", since=since, until=until, limit=50_000)
        drawn = {
            "reads": charts.reads_per_day(reads),
            "denials": charts.per_day(denials, "denials"),
            "heat": charts.heat_map(reads),
        }
        return r(p, "report.html", rep=rep, charts=drawn, since=since, until=until or "")

    def verify(p: web.Page) -> Response:
        result = p.vault.audit.verify(p.principal)
        key = p.vault.audit.public_key()
        return r(p, "verify.html", result=result.as_dict(), key=key, notice=DONE.get(p.arg("done")))

    def checkpoint(p: web.Page) -> Response:
        p.vault.audit.checkpoint(p.principal)
        raise Redirect("/verify?done=checkpoint")

    def export(p: web.Page) -> Response:
        fmt = p.form.get("format", "")
        if fmt not in EXPORT_TYPES:
            raise InvalidInput("choose jsonl, csv or cef")
        lines: list[str] = []
        p.vault.audit.export(p.principal, fmt, write=lines.append)
        media, ext = EXPORT_TYPES[fmt]
        data = "".join(line if line.endswith("\n") else line + "\n" for line in lines).encode()
        return download(data, media, f"cvault-audit.{ext}")

    def access(p: web.Page) -> Response:
        names = sorted(row["name"] for row in p.vault.clients.list(p.principal))
        total = len(names)
        pages = max(1, (total + 49) // 50)
        number = min(max(1, int(p.arg("page", "1")) if p.arg("page", "1").isdigit() else 1), pages)
        shown = names[(number - 1) * 50 : number * 50]
        matrix = [p.vault.access.client_access(p.principal, n) for n in shown]
        people = sorted({u["user"] for m in matrix for u in m["users"]})
        cells = {(m["client"], u["user"]): u for m in matrix for u in m["users"]}
        return r(
            p,
            "access.html",
            matrix=matrix,
            people=people,
            cells=cells,
            number=number,
            pages=pages,
            total=total,
        )

    c.page("/audit", audit)
    c.page("/report", report)
    c.page("/verify", verify)
    c.page("/verify/checkpoint", checkpoint, methods=("POST",))
    c.page("/audit/export", export, methods=("POST",))
    c.page("/access", access)

    # --- admins ------------------------------------------------------------------------------------------

    def team_map(p: web.Page) -> dict[str, list[str]]:
        """user name -> the teams they belong to now (the users page's Teams column)."""
        out: dict[str, list[str]] = {}
        for team in p.vault.teams.list(p.principal):
            for member in team["members"]:
                out.setdefault(member, []).append(team["name"])
        return out

    def users(p: web.Page) -> Response:
        rows = p.vault.users.list(p.principal)
        pending = [u for u in rows if "pending" in u["state"]]
        return r(
            p,
            "users.html",
            rows=rows,
            pending=pending,
            roles=ROLES,
            added=None,
            error=None,
            teams=team_map(p),
        )

    def user_add(p: web.Page) -> Response:
        roles = [x for x in p.form.get("roles", "").split("\n") if x]
        try:
            added = p.vault.users.add(p.principal, p.form.get("name", "").strip(), roles)
        except InvalidInput as exc:
            rows = p.vault.users.list(p.principal)
            pending = [u for u in rows if "pending" in u["state"]]
            return r(
                p,
                "users.html",
                400,
                rows=rows,
                pending=pending,
                roles=ROLES,
                added=None,
                error=exc.message,
                teams=team_map(p),
            )
        if not added.get("enrollment_code"):  # two-person activation: a second admin approves
            raise Redirect("/user?" + query_string(name=added["name"], done="added-pending"))
        return r(p, "enrollment_code.html", added=added, what="added")

    def user_page(p: web.Page, name: str, *, error: str | None = None, status: int = 200) -> Response:
        view = p.vault.users.show(p.principal, name)
        memberships = p.vault.teams.memberships(p.principal, name)
        view["teams"] = [f"{t['team']} ({', '.join(t['clients']) or 'no client'})" for t in memberships]
        member_of = [t["team"] for t in memberships]
        other_teams = [t["name"] for t in p.vault.teams.list(p.principal) if t["name"] not in member_of]
        return r(
            p,
            "user.html",
            status,
            view=view,
            roles=ROLES,
            member_of=member_of,
            other_teams=other_teams,
            error=error,
            notice=DONE.get(p.arg("done")),
        )

    def user_get(p: web.Page) -> Response:
        return user_page(p, p.arg("name"))

    def user_action(what: str):
        def act(p: web.Page) -> Response:
            name = p.query.get("name", "")
            u = p.vault.users
            done = what
            try:
                if what == "disable":
                    u.disable(p.principal, name)
                elif what == "enable":
                    u.enable(p.principal, name)
                elif what == "unlock":
                    u.unlock(p.principal, name)
                elif what == "grant":
                    u.grant(p.principal, name, p.form.get("role", ""))
                elif what == "revoke":
                    u.revoke(p.principal, name, p.form.get("role", ""))
                elif what == "train":
                    u.train(p.principal, name, p.form.get("until", "").strip() or "+365d")
                elif what == "reset-totp":
                    added = u.reset_totp(p.principal, name)
                    if not added.get("enrollment_code"):
                        raise Redirect("/user?" + query_string(name=name, done="reset-pending"))
                    return r(p, "enrollment_code.html", added=added, what="reset")
                elif what == "approve":
                    added = u.approve(p.principal, name)
                    return r(p, "enrollment_code.html", added=added, what="approved")
                elif what == "reset":
                    u.reset(p.principal, name)
                    done = "reset-pending"
                elif what == "confirm":
                    u.confirm(p.principal, name)
                elif what == "team-add":
                    p.vault.teams.member_add(p.principal, p.form.get("team", ""), name)
                elif what == "team-rm":
                    p.vault.teams.member_rm(p.principal, p.form.get("team", ""), name)
            except (InvalidInput, NotFound) as exc:
                return user_page(p, name, error=exc.message, status=400)
            except VaultError as exc:
                if exc.exit_code == 4:  # a refusal: show the rule at the form that asked
                    return user_page(p, name, error=exc.message, status=403)
                raise
            raise Redirect("/user?" + query_string(name=name, done=done))

        return act

    c.page("/users", users)
    c.page("/users/add", user_add, methods=("POST",))
    c.page("/user", user_get)
    for what in (
        "disable",
        "enable",
        "unlock",
        "grant",
        "revoke",
        "train",
        "reset-totp",
        "approve",
        "reset",
        "confirm",
        "team-add",
        "team-rm",
    ):
        c.page(f"/user/{what}", user_action(what), methods=("POST",))

    # --- engineers ---------------------------------------------------------------------------------------

    def records(p: web.Page) -> Response:
        """The engineer's records: ``secrets.search`` (paths, types, tags and non-secret fields;
        never a secret value) or, with no term, ``secrets.list_all``: each one audited
        need-to-know decision per client, exactly as ``secret search`` / ``secret list --all``."""
        q = p.arg("q").strip()
        only = p.arg("client").strip()
        visible = [row["name"] for row in p.vault.clients.list(p.principal) if row["state"] == "active"]
        error = None
        try:
            if q:
                rows = p.vault.secrets.search(p.principal, q, client=only or None)
            else:
                rows = [r for r in p.vault.secrets.list_all(p.principal) if not only or r["client"] == only]
        except InvalidInput as exc:
            rows, error = [], exc.message
        return r(p, "records.html", rows=rows[:500], q=q, client=only, clients=visible, error=error)

    def record(p: web.Page) -> Response:
        from vault.records import FIELDS

        client, path = p.arg("client"), p.arg("path", limit=1000)
        listing = {rec["path"]: rec for rec in p.vault.secrets.list(p.principal, client)}
        if path not in listing:
            raise NotFound(f"no record {path!r} for {client}")
        rec = listing[path]
        fields = FIELDS.get(rec.get("kind", ""), ())
        return r(p, "record.html", client=client, record_path=path, rec=rec, fields=fields)

    def reveal(p: web.Page) -> Response:
        got = p.vault.secrets.get(p.principal, p.form.get("client", ""), p.form.get("path", ""))
        name = p.form.get("field", "")
        if name not in got.fields:
            value = None
        else:
            value = got.fields[name]
            if isinstance(value, list):
                value = "\n".join(str(v) for v in value)
            elif value is not None:
                value = str(value)
        body = json.dumps({"field": name, "value": value, "version": got.version}, ensure_ascii=False)
        return Response(body.encode(), media_type="application/json")

    def step_up(p: web.Page) -> Response:
        done = p.vault.users.step_up(p.principal, p.form.get("code", "").strip())
        return Response(json.dumps(done).encode(), media_type="application/json")

    c.page("/records", records)
    c.page("/record", record)
    c.page("/reveal", reveal, methods=("POST",), json_errors=True)
    c.page("/step-up", step_up, methods=("POST",), json_errors=True)


ROLES = ("admin", "account_manager", "engineer", "security_reviewer")

#: the approval of each two-person setting (``setting_requests.name``) in the facade
APPROVE_SETTING = {"min_grace_days": lambda sla, principal, value: sla.approve_min_grace(principal, value)}

#: the notices after a change (``?done=...``): fixed texts, never anything from the request
DONE = {
    "renew": "SLA renewed.",
    "expire": "SLA ended; access is refused from now on and the grace period runs.",
    "request-shred": "Early shred requested: a second person must approve it (Approvals).",
    "approved": "Early shred approved: the next sweep shreds the client.",
    "setting": "Change approved: it applies from now on.",
    "min-grace-requested": "Change of the minimum grace period requested: a second person must approve it.",
    "checkpoint": "Checkpoint signed.",
    "added-pending": "User added. A second admin must approve the account before it can enroll.",
    "reset-pending": "Reset requested: a second admin must approve it.",
    "confirm": "Roles and assignments confirmed.",
    "disable": "User disabled.",
    "enable": "User enabled.",
    "unlock": "User unlocked.",
    "grant": "Role granted.",
    "revoke": "Role revoked.",
    "train": "Training attestation recorded.",
    "team-add": "Added to the team: need-to-know on its clients follows (training still applies).",
    "team-rm": "Removed from the team.",
}


def safe_file(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:100] or "client"


def certificate_body(doc: dict) -> dict:
    """The signed body of a certificate document, for the printable page."""
    body = doc.get("certificate") or doc.get("body") or {}
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = {}
    return body if isinstance(body, dict) else {}
