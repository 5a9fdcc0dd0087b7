"""Time the REST API: a bulk import of 10,000 networks and the list page's p95, next to the targets.

Runs the whole Django stack in-process (middleware, token auth, audit, revisions) against a
fresh test database: a temporary SQLite file, or a throwaway `test_…` database on the server
that DATABASE_URL names. Nothing touches var/. The import's CPU seconds (this process's, so not
PostgreSQL's) and the load average print beside its wall time: on a busy machine the wall time
says more about the other processes than about this one.

Run: .venv/bin/python bench/api.py [--networks N] [--requests N]
"""

import argparse
import ipaddress
import os
import random
import statistics
import time

from scratch import scratch_database  # sets up Django, so it comes before any Django import

# isort: split
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from policy.models import ApiToken

BULK_TARGET_S = 3.0  # issue 14
LIST_P95_TARGET_MS = 100.0


def synthetic_rows(count: int, rng: random.Random) -> list[dict]:
    """Return count distinct networks, about 80% IPv4 /24s and 20% IPv6 /48s, in assorted notations."""
    rows, seen = [], set()
    while len(rows) < count:
        if rng.random() < 0.8:
            network = ipaddress.ip_network((rng.randrange(1 << 24) << 8, 24))
            text = f"{network.network_address}/255.255.255.0" if rng.random() < 0.5 else str(network)
        else:
            network = ipaddress.ip_network(((0x2001_0DB8 << 96) | (rng.randrange(1 << 16) << 80), 48))
            text = str(network)
        if network not in seen:
            seen.add(network)
            rows.append({"network": text, "description": f"site {len(rows)}"})
    return rows


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100)[int(fraction * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200, help="list page requests to time")
    args = parser.parse_args()
    rng = random.Random(5)

    with scratch_database():
        user = User.objects.create_superuser("bench", password=None)
        token = ApiToken(user=user, name="bench")
        key = token.generate_key()
        token.save()
        client = Client(SERVER_NAME="localhost", HTTP_AUTHORIZATION=f"Token {key}")

        # A server has served requests before an import arrives: the first one of a process imports
        # the URL conf and the API's modules, a third of a second that is no part of an import.
        client.get("/api/v1/trusted-networks/")
        rows = synthetic_rows(args.networks, rng)
        load = os.getloadavg()[0]
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.post("/api/v1/trusted-networks/bulk/", rows, content_type="application/json")
        bulk_s, bulk_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
        if response.status_code != 200:
            raise SystemExit(f"bulk import failed: {response.status_code} {response.content[:500]!r}")

        pages = max(1, args.networks // 100)
        queries = [
            "",
            *(f"?page={rng.randint(1, pages)}" for _ in range(3)),
            *(f"?contains={ipaddress.ip_address(rng.randrange(1 << 32))}" for _ in range(3)),
            "?family=6&ordering=-network",
            "?q=site 12",
        ]
        timings = []
        for number in range(args.requests):
            url = "/api/v1/trusted-networks/" + queries[number % len(queries)]
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET {url} failed: {response.status_code}")

    print(f"database: {connection.vendor}, {args.networks} networks, {args.requests} list requests")
    print(
        f"bulk import of {args.networks} networks: {bulk_s:.2f} s, {bulk_cpu_s:.2f} CPU s in this process, "
        f"load average {load:.2f} (target <= {BULK_TARGET_S:.0f} s)"
    )
    print(
        f"list page p95: {percentile(timings, 0.95):.1f} ms, median {statistics.median(timings):.1f} ms "
        f"(target p95 <= {LIST_P95_TARGET_MS:.0f} ms)"
    )


if __name__ == "__main__":
    main()
