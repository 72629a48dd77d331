"""Benchmark: the web console's pages, through a real ``cvault serve`` on loopback HTTPS.

* the audit-log page of a 1,000,000-event log, with a filter (target: median < 200 ms);
* the clients page of 10,000 clients (target: median < 200 ms);
* a reveal round trip (POST /reveal: ``secrets.get`` + its audit event; target < 100 ms).

The log is synthesized straight into the vault's ``audit_events`` table (plausible actors,
actions, clients and outcomes; the chain is not valid, which the page does not read), as are the
10,000 client rows; the reveal reads a real record. Times are request round trips on one
keep-alive connection, so they include the server's whole work (session resume, facade, policy,
the ``audit.log`` event each page view writes, rendering) and TLS on loopback. Prints one JSON
line per result.

Usage: python bench/console.py [--events N] [--clients N] [--runs R]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, iqr
from tests.helpers import OPERATOR_TOKEN, add_client, make_vault, operator
from tests.server.harness import start_service

ACTIONS = ["secret.get", "secret.list", "auth.login", "client.show", "audit.log", "sla.show", "secret.put"]
OUTCOMES = ["allow", "allow", "allow", "ok", "deny"]


def synthesize_log(conn, n: int) -> None:
    rng = random.Random(7)
    users = [f"user{i}" for i in range(40)]
    clients = [f"client-{i}" for i in range(500)]
    start = time.time() - 365 * 86400
    base = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()[0]
    batch = []
    for i in range(1, n + 1):
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i * 30))
        batch.append(
            (
                base + i,
                at,
                rng.choice(users),
                ACTIONS[i % len(ACTIONS)],
                rng.choice(clients),
                OUTCOMES[i % len(OUTCOMES)],
                "synthetic",
                "cli",
                b"\0" * 32,
                b"\1" * 32,
            )
        )
        if len(batch) == 50_000:
            conn.executemany(
                "INSERT INTO audit_events (seq, at, actor, action, client, outcome, reason, origin,"
                " prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            batch = []
    if batch:
        conn.executemany(
            "INSERT INTO audit_events (seq, at, actor, action, client, outcome, reason, origin,"
            " prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch,
        )


def synthesize_clients(conn, n: int) -> None:
    from vault.store import rowmac

    now = int(time.time())
    rng = random.Random(3)
    conn.executemany(
        "INSERT INTO clients (id, name, created_at, created_by, sla_end, grace_days, current_key_version)"
        " VALUES (?, ?, ?, 'bench', ?, 30, 1)",
        [
            # SLA ends from 25 days ago (expired, in its 30-day grace) to 700 days ahead: the table
            # shows both states, and none is due, so the service's background sweep has nothing
            # to shred while the pages are timed (synthetic rows have no keys to shred)
            (os.urandom(16).hex(), f"bench-{i:05d}", now, now + rng.randint(-25, 700) * 86400)
            for i in range(n)
        ],
    )
    rowmac.stamp(conn, "clients", "mac IS NULL")  # synthesized rows: MACed as the backfill would


class Client:
    def __init__(self, port: int, cafile: Path):
        self.port = port
        self.conn = http.client.HTTPSConnection(
            "127.0.0.1", port, context=ssl.create_default_context(cafile=str(cafile)), timeout=120
        )
        self.cookie = f"__Host-cvault_session={OPERATOR_TOKEN}"
        self.host = f"127.0.0.1:{port}"

    def get(self, path: str) -> tuple[int, str]:
        self.conn.request("GET", path, headers={"Cookie": self.cookie, "Host": self.host})
        r = self.conn.getresponse()
        return r.status, r.read().decode()

    def post(self, path: str, form: dict) -> tuple[int, str]:
        self.conn.request(
            "POST",
            path,
            body=urlencode(form).encode(),
            headers={
                "Cookie": self.cookie,
                "Host": self.host,
                "Origin": f"https://{self.host}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        r = self.conn.getresponse()
        return r.status, r.read().decode()


def timed(call, runs: int) -> list[float]:
    call()  # warm-up: templates compiled, pages of the database in the cache
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        status, _ = call()
        out.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise RuntimeError(f"status {status}")
    return out


def result(name: str, samples: list[float], target: float, note: str) -> Result:
    median = statistics.median(samples)
    return Result(name, "ms", round(median, 2), round(iqr(samples), 2), None, "", None,
                  f"<= {target:g} ms", median <= target, note)  # fmt: skip


def run(events: int = 1_000_000, clients: int = 10_000, runs: int = 15) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        vd = make_vault(base)
        v = vd.open()
        try:
            add_client(v, "acme")
            v.secrets.put(operator(), "acme", "office/fw", "access", {"username": "admin", "password": "pw"})
            with v.ctx.db.write() as conn:
                synthesize_log(conn, events)
                synthesize_clients(conn, clients)
        finally:
            v.close()
        service = start_service(vd, base / "service", timeout=120)
        try:
            c = Client(service.port, service.ca.ca_path)
            status, html = c.get("/record?client=acme&path=office%2Ffw")
            csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html).group(1)
            out = []
            for name, path in (
                ("audit_page_filter_user", "/audit?user=user7"),
                ("audit_page_filter_action_outcome", "/audit?action=secret.get&outcome=deny"),
                ("audit_page_deep_keyset", f"/audit?action=secret.*&before={events // 2}"),
            ):
                out.append(
                    result(
                        f"console.{name}",
                        timed(lambda path=path: c.get(path), runs),
                        200,
                        f"GET {path}, {events:,} events, 50 rows",
                    )
                )
            out.append(
                result(
                    "console.clients_page",
                    timed(lambda: c.get("/clients?sort=days_left&dir=desc"), runs),
                    200,
                    f"GET /clients sorted by days left, {clients:,} clients, 100 rows a page",
                )
            )
            form = {"client": "acme", "path": "office/fw", "field": "password", "csrf": csrf}
            out.append(
                result(
                    "console.reveal_round_trip",
                    timed(lambda: c.post("/reveal", form), runs * 2),
                    100,
                    "POST /reveal: secrets.get, its audit event, JSON answer",
                )
            )
            return out
        finally:
            service.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    for r in run(a.events, a.clients, a.runs):
        print(r.line())


if __name__ == "__main__":
    main()
