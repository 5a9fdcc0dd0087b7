"""Time the REST API: a bulk import of 10,000 networks and the list page's p95, next to the targets.

Runs the whole Django stack in-process (middleware, token auth, audit, revisions) against a
fresh test database: a temporary SQLite file, or a throwaway `test_…` database on the server
that DATABASE_URL names. Nothing touches var/.

Run: .venv/bin/python bench/api.py [--networks N] [--requests N]
"""

import argparse
import ipaddress
import random
import statistics
import time

from scratch import scratch_database  # sets up Django, so it comes before any Django import

# isort: split
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from policy.models import ApiToken

BULK_TARGET_S = 10.0
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

        rows = synthetic_rows(args.networks, rng)
        started = time.perf_counter()
        response = client.post("/api/v1/trusted-networks/bulk/", rows, content_type="application/json")
        bulk_s = time.perf_counter() - started
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
    print(f"bulk import of {args.networks} networks: {bulk_s:.2f} s (target <= {BULK_TARGET_S:.0f} s)")
    print(
        f"list page p95: {percentile(timings, 0.95):.1f} ms, median {statistics.median(timings):.1f} ms "
        f"(target p95 <= {LIST_P95_TARGET_MS:.0f} ms)"
    )


if __name__ == "__main__":
    main()
