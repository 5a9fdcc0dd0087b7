"""Concurrent policy writers: serials never repeat, no revision mixes two edits, no deadlock (both databases)."""

import threading
import time

import pytest
from django.db import connection, transaction

from policy import audit, locks
from policy.models import AuditEntry, PolicyRevision, TrustedNetwork
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


@pytest.mark.django_db(transaction=True)
def test_audit_then_policy_beside_policy_then_audit_does_not_deadlock():
    """One transaction audits and then changes the policy while another does the reverse.

    Taken in opposite orders the two locks would deadlock on PostgreSQL and the server would
    abort one transaction; taken in one order, both commit.
    """
    policy_held, errors = threading.Event(), []

    def policy_then_audit():
        try:
            with policy_change():
                locks.lock_policy()  # as services do: lock, check the list, then write
                policy_held.set()
                time.sleep(0.5)  # let the other transaction take what it can meanwhile
                TrustedNetwork.objects.create(network="10.1.0.0/16")  # audited: takes the chain's lock
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    def audit_then_policy():
        try:
            policy_held.wait(10)
            with transaction.atomic():
                audit.record("note", object_type="test", object_repr="audit first")
                with policy_change():
                    TrustedNetwork.objects.create(network="10.2.0.0/16")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=policy_then_audit), threading.Thread(target=audit_then_policy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert set(TrustedNetwork.objects.values_list("network", flat=True)) == {"10.1.0.0/16", "10.2.0.0/16"}
    assert AuditEntry.objects.filter(action="note").count() == 1
