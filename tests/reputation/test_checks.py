"""Checks of the watched addresses: stored answers, history, audit entries, and `manage.py check_blacklists`."""

import time

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from policy import reputation
from policy.models import AuditEntry, Blocklist, Listing, ListingEvent, ReputationCheck, WatchedAddress
from tests.dnsbl_server import CLEAR, DELIST_URL, LISTED, LISTED_V6, REASON, REFUSED, SILENT, ZONE, watch

pytestmark = pytest.mark.django_db


def states():
    return {row.address.address: (row.state, row.reason) for row in Listing.objects.select_related("address")}


def test_a_check_stores_each_answer_as_what_it_is(fake_dnsbl, fake_zone):
    watch(LISTED, CLEAR, REFUSED, SILENT, LISTED_V6)
    check = reputation.run_check()
    assert states() == {
        LISTED: ("listed", REASON),
        CLEAR: ("clear", ""),
        REFUSED: ("refused", "query through a public or open resolver, which this list refuses (127.255.255.254)"),
        SILENT: ("timeout", f"no answer from {fake_dnsbl.address} within 0.5 s"),
        LISTED_V6: ("listed", "IPv6 listing: open relay reported"),
    }
    assert (check.queries, check.listed, check.failed, check.error) == (5, 2, 2, "")
    assert check.summary == "5 queries, 2 listed, 2 failed"
    assert WatchedAddress.objects.filter(last_checked_at=None).count() == 0


def test_state_changes_become_history_and_audit_entries_but_repeats_do_not(fake_dnsbl, fake_zone):
    (address,) = watch(LISTED)
    reputation.run_check()
    first = Listing.objects.get()
    reputation.run_check()
    assert Listing.objects.get().since == first.since  # still listed: first seen stays
    assert ListingEvent.objects.count() == 1
    assert AuditEntry.objects.filter(action="dnsbl_change").count() == 1
    assert AuditEntry.objects.filter(action="dnsbl_check").count() == 2

    fake_dnsbl.answers.clear()  # the list drops the address
    reputation.run_check()
    listing = Listing.objects.get()
    assert (listing.state, listing.reason) == ("clear", "")
    assert listing.since > first.since
    events = list(address.events.values_list("previous_state", "state"))
    assert events == [("listed", "clear"), ("", "listed")]
    change = AuditEntry.objects.filter(action="dnsbl_change").order_by("-id").first()
    assert change.object_repr == f"{LISTED} on {ZONE}"
    assert (change.before, change.after) == ({"state": "listed"}, {"state": "clear", "reason": ""})


def test_ipv6_addresses_only_go_to_lists_that_take_them(fake_dnsbl, fake_zone):
    Blocklist.objects.create(zone="v4only.dnsbl.test", ipv6=False)
    watch(LISTED_V6)
    check = reputation.run_check()
    assert check.queries == 1
    assert [name.endswith("." + ZONE) for name, _ in fake_dnsbl.queries] == [True, True]
    assert Listing.objects.get().blocklist.zone == ZONE


def test_disabled_lists_are_not_asked(fake_dnsbl, fake_zone):
    fake_zone.enabled = False
    fake_zone.save()
    watch(LISTED)
    assert reputation.run_check().queries == 0
    assert fake_dnsbl.queries == []


def test_at_most_concurrency_queries_wait_at_once(fake_dnsbl, fake_zone):
    """Four silent addresses time out after 0.5 s each: in parallel once, one by one four times."""
    for n in range(4):
        fake_dnsbl.ignore(f"5.6.7.{n}")
        watch(f"5.6.7.{n}")
    started = time.monotonic()
    reputation.run_check(concurrency=4)
    parallel = time.monotonic() - started
    started = time.monotonic()
    reputation.run_check(concurrency=1)
    serial = time.monotonic() - started
    assert parallel < 1.5 <= serial


def test_only_one_check_runs_at_a_time(fake_zone):
    ReputationCheck.objects.create(started_by_name="someone")
    with pytest.raises(reputation.CheckRefused, match="already running"):
        reputation.begin_check()


def test_a_check_left_running_by_a_dead_process_goes_stale(fake_zone):
    from django.utils import timezone

    ReputationCheck.objects.create(started_by_name="someone", started_at=timezone.now() - reputation.STALE_AFTER * 2)
    assert reputation.begin_check().running


@override_settings(RELAYADMIN_DNS_RESOLVER="dns.example.net:53")
def test_a_bad_resolver_setting_ends_the_check_with_its_reason(db):
    watch(LISTED)
    check = reputation.run_check()
    assert check.error.startswith("RELAYADMIN_DNS_RESOLVER='dns.example.net:53' is not an address and port")
    assert AuditEntry.objects.filter(action="dnsbl_check").get().after["error"] == check.error


def test_the_command_prints_every_answer_and_exits_2_when_listed(fake_zone, capsys):
    watch(LISTED, CLEAR)
    with pytest.raises(SystemExit) as caught:
        call_command("check_blacklists", "--concurrency", "2")
    assert caught.value.code == 2
    out = capsys.readouterr().out
    assert f"{LISTED:39} {ZONE:30} listed    {REASON}  delist: {DELIST_URL}" in out
    assert f"{CLEAR:39} {ZONE:30} clear" in out
    assert "Checked 2 addresses: 2 queries, 1 listed, 0 failed." in out
    entry = AuditEntry.objects.filter(action="dnsbl_check").get()
    assert (entry.source, entry.actor_name) == ("cli", "system: check_blacklists")


def test_the_command_exits_1_when_a_list_could_not_be_asked_and_0_when_all_is_clear(fake_zone, capsys):
    watch(CLEAR, SILENT)
    with pytest.raises(SystemExit) as caught:
        call_command("check_blacklists", SILENT)
    assert caught.value.code == 1
    assert "timeout" in capsys.readouterr().out
    call_command("check_blacklists", CLEAR)  # no SystemExit: exit status 0
    assert "1 queries, 0 listed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["10.0.0.1"], "10.0.0.1 is a private address. DNSBLs only list public addresses"),
        (["9.9.9.9"], "9.9.9.9 is not watched"),
        (["--concurrency", "0"], "--concurrency is a number from 1 to 100."),
    ],
)
def test_the_command_refuses_bad_input_clearly(fake_zone, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("check_blacklists", *args)


def test_the_defaults_are_spamhaus_spamcop_and_barracuda_with_delisting_pages(db):
    defaults = {b.zone: b for b in Blocklist.objects.all()}
    assert set(defaults) == {"zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"}
    assert all(b.delist_url.startswith("https://") and b.notes for b in defaults.values())
    assert "127.255.255.254" in defaults["zen.spamhaus.org"].notes
    assert defaults["zen.spamhaus.org"].ipv6
    assert not defaults["b.barracudacentral.org"].enabled  # its terms require registering the resolver first
    assert "register" in defaults["b.barracudacentral.org"].notes


def test_metrics_count_listings_for_prometheus(fake_zone):
    watch(LISTED, CLEAR, LISTED_V6)
    reputation.run_check()
    text = reputation.metrics_text()
    assert "relayadmin_dnsbl_listings 2\n" in text
    assert "relayadmin_dnsbl_watched_addresses 3\n" in text
    assert f'relayadmin_dnsbl_state{{address="{LISTED}",zone="{ZONE}",state="listed"}} 1' in text
    assert f'relayadmin_dnsbl_state{{address="{CLEAR}",zone="{ZONE}",state="listed"}} 0' in text
    assert "relayadmin_dnsbl_last_check_timestamp_seconds 0\n" not in text


def test_relayd_nodes_public_addresses_are_suggested(db):
    from policy.models import RelayNode

    RelayNode.objects.create(name="mx1", address="81.2.69.142")
    RelayNode.objects.create(name="local", address="127.0.0.1")
    RelayNode.objects.create(name="mx2", address="81.2.69.143")
    watch("81.2.69.143")
    assert reputation.suggestions() == [("81.2.69.142", "mx1")]


def test_the_button_waits_a_minute_between_checks_but_cron_does_not(fake_zone):
    reputation.run_check()
    with pytest.raises(
        reputation.CheckRefused, match=r"blocklists limit how often they may be asked, so check again in \d+ s"
    ):
        reputation.start_background_check()
    assert reputation.begin_check().running  # the command's path
