"""The write locks, and the one order the policy and audit locks are taken in.

A policy change takes the policy lock, then appends audit entries under the audit chain's lock.
A request that appended an audit entry first and then changed the policy would take them the
other way round, and two such transactions on PostgreSQL could each wait for the other until
the server aborted one. So taking the chain's lock always takes the policy lock first: every
transaction takes them in the same order, which cannot deadlock. Advisory transaction locks are
re-entrant, so a policy change that already holds the policy lock pays nothing more.

SQLite needs neither: the settings open every transaction IMMEDIATE, which serialises writers.
"""

from django.db import connection


def _advisory_lock(name: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])


def lock_policy() -> None:
    """Keep other writers from changing the policy until the current transaction ends."""
    _advisory_lock("relayadmin_policy")


def lock_audit_chain() -> None:
    """Keep other writers from appending to the audit chain until the current transaction ends."""
    # Two writers must not both chain onto the same previous entry.
    lock_policy()
    _advisory_lock("policy_auditentry")


def lock_nodes() -> None:
    """Keep other node reports from adding a node until the current transaction ends."""
    _advisory_lock("relayadmin_nodes")
