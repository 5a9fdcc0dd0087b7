"""Concurrent policy writers: serials never repeat and no revision mixes two edits (both databases)."""

import threading
import time

import pytest
from django.db import connection

from policy.models import PolicyRevision, TrustedNetwork
from policy.revisions import policy_change

WRITERS = 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_one_clean_revision_each():
    start = threading.Barrier(WRITERS)
    errors = []

    def writer(number):
        try:
            start.wait()
            with policy_change():
                TrustedNetwork.objects.create(network=f"10.{number}.0.0/16")
                time.sleep(0.05)  # hold the change open so the writers overlap
                TrustedNetwork.objects.create(network=f"10.{number}.1.0/24")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    revisions = list(PolicyRevision.objects.order_by("serial"))
    assert [r.serial for r in revisions] == list(range(1, WRITERS + 1))
    previous = set()
    for revision in revisions:
        networks = {entry["network"] for entry in revision.snapshot_data["trusted_networks"]}
        added = networks - previous
        # Exactly one writer's two networks per revision: never half an edit, never two edits.
        assert len(added) == 2 and previous < networks, (revision.serial, sorted(added))
        assert len({network.split(".")[1] for network in added}) == 1
        previous = networks
