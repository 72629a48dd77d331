"""Benchmark: the web console's pages, through a real ``cvault serve`` on loopback HTTPS.

* the audit-log page of a 1,000,000-event log, with a filter (target: median < 200 ms);
* the clients page of 10,000 clients, sorted, filtered, and a deep page (target: median < 200 ms);
* a reveal round trip (POST /reveal: ``secrets.get`` + its audit event; target < 100 ms).

The log is synthesized straight into the vault's ``audit_events`` table (plausible actors,
actions, clients and outcomes, chained as the vault chains them and then signed by one
checkpoint, so the audit high-water mark accepts it), as are the 10,000 client rows (MACed as the
backfill would; 200 engineers assigned directly, one team reaching 1,000 clients); the reveal
reads a real record. Each sample is one request on one keep-alive connection.

Three numbers per page, because the machine is shared (docs/performance.md):

* **wall**: the request's round trip (the server's whole work: session resume, facade, policy,
  the audit event a page view writes, rendering; and TLS on loopback);
* **server CPU**: CPU time the ``cvault serve`` process spent on the request (the sum of its
  threads' ``/proc/<pid>/task/*/schedstat`` run times before and after; other processes'
  load does not inflate it);
* **ratio**: wall over a **floor** measured interleaved in the same run, ``GET /v1/health`` on
  the same connection (TLS, HTTP, the middleware: what no request avoids).

Prints one JSON line per result (``python -m bench --only console``).

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

from bench.common import Result, insert_statement, iqr
from tests.helpers import OPERATOR_TOKEN, add_client, make_vault, operator
from tests.server.harness import start_service

ACTIONS = ["secret.get", "secret.list", "auth.login", "client.show", "audit.log", "sla.show", "secret.put"]
OUTCOMES = ["allow", "allow", "allow", "ok", "deny"]


def synthesize_log(conn, n: int) -> None:
    """``n`` events after the log's head, chained exactly as :meth:`AuditLog._append` chains."""
    from vault.audit.log import EVENT_COLUMNS, AuditEntry, chain_hash
    from vault.clock import from_epoch, rfc3339

    rng = random.Random(7)
    users = [f"user{i}" for i in range(40)]
    clients = [f"client-{i}" for i in range(500)]
    start = time.time() - 365 * 86400
    base, prev = conn.execute("SELECT seq, entry_hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    prev = bytes(prev)
    batch = []
    for i in range(1, n + 1):
        entry = AuditEntry(
            base + i,
            rfc3339(from_epoch(int(start + i * 30))),
            rng.choice(users),
            ACTIONS[i % len(ACTIONS)],
            rng.choice(clients),
            OUTCOMES[i % len(OUTCOMES)],
            "synthetic",
            "cli",
            None,
            None,
            prev,
            b"",
        )
        digest = chain_hash(prev, entry.fields())
        batch.append((*entry[:-2], prev, digest))
        prev = digest
        if len(batch) == 50_000 or i == n:
            conn.executemany(insert_statement("audit_events", EVENT_COLUMNS), batch)
            batch = []


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


def synthesize_reach(v, engineers: int = 200, team_clients: int = 1000) -> None:
    """``engineers`` engineers, each assigned directly to 3 random clients, and team
    ``bench-desk`` (5 of them) assigned to ``team_clients`` clients: the clients page's
    "Assigned engineers" column and its engineer filter have real paths to find."""
    from tests.factories import person
    from vault.store import rowmac

    rng = random.Random(5)
    ids = [row[0] for row in v.ctx.db.all("SELECT id FROM clients WHERE name LIKE 'bench-%' ORDER BY name")]
    people = [person(v, f"eng{i:03d}", "engineer") for i in range(engineers)]
    t = int(time.time())
    with v.ctx.db.write() as conn:
        for who in people:
            for client_id in rng.sample(ids, 3):
                rowmac.insert(
                    conn,
                    "assignments",
                    {"client_id": client_id, "user_id": who.user_id, "created_at": t, "created_by": "bench"},
                )
        team = rowmac.insert(conn, "teams", {"name": "bench-desk", "created_at": t, "created_by": "bench"})
        for who in people[:5]:
            rowmac.insert(
                conn,
                "team_members",
                {"team_id": team, "user_id": who.user_id, "added_at": t, "added_by": "bench"},
            )
        for client_id in rng.sample(ids, team_clients):
            rowmac.insert(
                conn,
                "team_assignments",
                {"client_id": client_id, "team_id": team, "created_at": t, "created_by": "bench"},
            )


def cpu_ns(pid: int) -> int:
    """CPU time (ns) the process's live threads have run: ``/proc/<pid>/task/*/schedstat``."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass  # the thread ended meanwhile
    return total


def sample(call, pid: int) -> tuple[float, float]:
    """One request: (wall ms, server CPU ms)."""
    c0, t0 = cpu_ns(pid), time.perf_counter()
    status, _ = call()
    wall, cpu = (time.perf_counter() - t0) * 1000, (cpu_ns(pid) - c0) / 1e6
    if status != 200:
        raise RuntimeError(f"status {status}")
    return wall, cpu


def measured(call, floor, pid: int, runs: int) -> tuple[list, list, list, list]:
    """``call`` and ``floor`` interleaved (one warm-up each): their wall and CPU samples. A CPU
    sample that came out negative (a worker thread ended between the two reads) is dropped."""
    sample(call, pid)
    sample(floor, pid)
    walls, cpus, floor_walls, floor_cpus = [], [], [], []
    for _ in range(runs):
        w, c = sample(call, pid)
        fw, fc = sample(floor, pid)
        walls.append(w)
        floor_walls.append(fw)
        if c >= 0:
            cpus.append(c)
        if fc >= 0:
            floor_cpus.append(fc)
    return walls, cpus, floor_walls, floor_cpus


FLOOR_DESC = "GET /v1/health on the same connection, interleaved (TLS + HTTP + middleware)"


def results(name: str, samples: tuple, target: float, note: str) -> list[Result]:
    """Two results per page: wall (ratio to the floor's wall) and server CPU (ratio to the
    floor's CPU); each meets the target on its own median."""
    walls, cpus, floor_walls, floor_cpus = samples
    out = []
    for kind, values, floors in (("", walls, floor_walls), (".server_cpu", cpus, floor_cpus)):
        median, floor = statistics.median(values), statistics.median(floors)
        out.append(
            Result(
                f"console.{name}{kind}",
                "ms",
                round(median, 2),
                round(iqr(values), 2),
                round(floor, 2),
                FLOOR_DESC + (" (server CPU)" if kind else ""),
                round(median / floor, 2) if floor > 0 else None,
                f"<= {target:g} ms",
                median <= target,
                note + ("; server CPU of the request" if kind else "; wall-clock round trip"),
            )
        )
    return out


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
            synthesize_reach(v)
            v.audit.checkpoint(operator())  # signs the synthetic log once
        finally:
            v.close()
        service = start_service(vd, base / "service", timeout=120)
        try:
            c = Client(service.port, service.ca.ca_path)
            pid = service.proc.pid
            status, html = c.get("/record?client=acme&path=office%2Ffw")
            csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html).group(1)

            def floor():
                return c.get("/v1/health")

            out = []
            for name, path in (
                ("audit_page_filter_user", "/audit?user=user7"),
                ("audit_page_filter_action_outcome", "/audit?action=secret.get&outcome=deny"),
                ("audit_page_deep_keyset", f"/audit?action=secret.*&before={events // 2}"),
            ):
                samples = measured(lambda path=path: c.get(path), floor, pid, runs)
                out += results(name, samples, 200, f"GET {path}, {events:,} events, 50 rows")
            for name, path in (
                ("clients_page", "/clients?sort=days_left&dir=desc"),
                ("clients_page_by_records", "/clients?sort=records&dir=desc"),
                ("clients_page_filtered", "/clients?state=active&within=90&engineer=eng001"),
                ("clients_page_deep", "/clients?q=bench&sort=state&page=60"),
            ):
                samples = measured(lambda path=path: c.get(path), floor, pid, runs)
                out += results(name, samples, 200, f"GET {path}, {clients:,} clients, 100 rows a page")
            form = {"client": "acme", "path": "office/fw", "field": "password", "csrf": csrf}
            samples = measured(lambda: c.post("/reveal", form), floor, pid, runs * 2)
            out += results(
                "reveal_round_trip", samples, 100, "POST /reveal: secrets.get, its audit event, JSON answer"
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
