"""Time every page of the web UI, server side, with 10,000 trusted networks, next to the 150 ms target.

Runs the whole Django stack in-process (middleware, sessions, templates) against a scratch database
(see bench/scratch.py). Each page is requested several times by a logged-in superuser; the figure is
the median time from request to complete response, which is what the server spends on the page.

Run: .venv/bin/python bench/pages.py [--networks N] [--repeat N]
"""

import argparse
import ipaddress
import os
import statistics
import time

from scratch import scratch_database  # sets up Django, so it comes before any Django import

# isort: split
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from policy.audit import audit_context
from policy.models import LocalDomain, PolicyRevision, SmtpUser, TrustedNetwork
from policy.revisions import policy_change

TARGET_MS = 150.0


def load_policy(networks: int) -> None:
    """Fill the database like a large site: many trusted networks, a few domains and users, two revisions."""
    with audit_context(source="cli", command="bench"), policy_change():
        entries = [
            TrustedNetwork(network=str(ipaddress.ip_network((0x0A000000 + (n << 8), 24))), description=f"site {n}")
            for n in range(networks)
        ]
        for entry in entries:
            entry.normalise()  # bulk_create skips save(), which derives the family and range
        TrustedNetwork.objects.bulk_create(entries)
        LocalDomain.objects.create(domain="example.com", include_subdomains=True)
        scanner = SmtpUser(username="scanner", description="office scanner")
        scanner.set_password("a long scanner password")
        scanner.save()
    with audit_context(source="cli", command="bench"), policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24", description="one more")


def pages() -> list[str]:
    first = TrustedNetwork.objects.order_by("pk").first()
    newest = PolicyRevision.objects.order_by("-serial").first()
    return [
        "/",
        "/restrictions/",
        "/restrictions/?trusted_q=10.0.3.7",
        "/restrictions/?trusted_q=site+12",
        "/restrictions/trusted/add/",
        f"/restrictions/trusted/{first.pk}/edit/",
        "/domains/",
        "/smtp-users/",
        "/check/",
        "/check/?client=10.0.3.7&recipient=someone%40example.org",
        "/revisions/",
        f"/revisions/{newest.serial}/",
        f"/revisions/{newest.serial}/?list=trusted_networks&page=50",
        f"/revisions/diff/?a={newest.serial - 1}&b={newest.serial}",
        "/exports/",
        "/audit/",
        "/networks/import/",
        "/api-tokens/",
        "/users/",
        "/api/v1/trusted-networks/",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="requests per page; the median is printed")
    args = parser.parse_args()

    with scratch_database():
        load_policy(args.networks)
        user = User.objects.create_superuser("bench", password=None)
        client = Client(SERVER_NAME="localhost")
        client.force_login(user)
        print(f"database: {connection.vendor}, {args.networks} trusted networks, load average {os.getloadavg()[0]:.2f}")
        print(f"{'page':<60} {'median ms':>10} {'size KB':>8}  target <= {TARGET_MS:.0f} ms")
        over = 0
        for url in pages():
            timings, size = [], 0
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get(url)
                body = b"".join(response) if response.streaming else response.content
                timings.append((time.perf_counter() - started) * 1000)
                size = len(body)
                if response.status_code != 200:
                    raise SystemExit(f"GET {url}: {response.status_code}")
            median = statistics.median(timings)
            over += median > TARGET_MS
            flag = "" if median <= TARGET_MS else "  OVER"
            print(f"{url:<60} {median:>10.1f} {size / 1024:>8.0f}{flag}")
        print(f"{over} of {len(pages())} pages over the target")


if __name__ == "__main__":
    main()
