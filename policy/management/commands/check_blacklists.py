"""Check the watched addresses against the DNS blocklists; exit 0: none listed, 2: listed, 1: could not check."""

import sys

from django.core.management.base import BaseCommand, CommandError

from policy import reputation
from policy.addresses import AddressError, parse_public_address
from policy.audit import audit_context
from policy.models import Listing, WatchedAddress


class Command(BaseCommand):
    help = (
        "Query every enabled DNS blocklist about every watched address (meant for a timer or cron). "
        "Exit 0: nothing listed, 2: an address is listed, 1: some lists could not be asked."
    )

    def add_arguments(self, parser):
        parser.add_argument("addresses", nargs="*", help="check only these watched addresses")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="queries in flight at once (default: RELAYADMIN_DNSBL_CONCURRENCY, 8)",
        )

    def handle(self, *args, addresses, concurrency, **options):
        if concurrency is not None and not 1 <= concurrency <= 100:
            raise CommandError("--concurrency is a number from 1 to 100.")
        watched = self._watched(addresses)
        with audit_context(source="cli", command="check_blacklists"):
            try:
                check = reputation.run_check(reputation.begin_check(), watched=watched, concurrency=concurrency)
            except reputation.CheckRefused as exc:
                raise CommandError(str(exc)) from None
        if check.error:
            raise CommandError(f"The check could not run: {check.error}")
        listings = Listing.objects.select_related("address", "blocklist").filter(
            address__in=watched, blocklist__enabled=True
        )
        for listing in listings:
            reason = f"  {listing.reason}" if listing.reason else ""
            listed = listing.state == "listed" and listing.blocklist.delist_url
            delist = f"  delist: {listing.blocklist.delist_url}" if listed else ""
            self.stdout.write(
                f"{listing.address.address:39} {listing.blocklist.zone:30} {listing.state:8}{reason}{delist}"
            )
        self.stdout.write(f"Checked {len(watched)} addresses: {check.summary}.")
        if check.listed:
            sys.exit(2)
        if check.failed:
            sys.exit(1)

    def _watched(self, texts: list[str]) -> list[WatchedAddress]:
        if not texts:
            return list(WatchedAddress.objects.all())
        chosen = []
        for text in texts:
            try:
                address = str(parse_public_address(text))
            except AddressError as exc:
                raise CommandError(exc.messages[0]) from None
            found = WatchedAddress.objects.filter(address=address).first()
            if found is None:
                raise CommandError(f"{address} is not watched; add it on the Reputation page or with the API first.")
            chosen.append(found)
        return chosen
