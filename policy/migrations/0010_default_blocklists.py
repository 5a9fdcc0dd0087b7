"""The default DNS blocklists, with their delisting pages and usage terms (docs/reputation.md)."""

from django.db import migrations

DEFAULTS = [
    {
        "zone": "zen.spamhaus.org",
        "delist_url": "https://check.spamhaus.org/",
        "ipv6": True,
        "enabled": True,
        "notes": "Spamhaus ZEN (SBL, CSS, XBL, PBL). Free only for low-volume, non-commercial use; others need a "
        "Data Query Service key. Queries through public resolvers (8.8.8.8, 1.1.1.1, …) are refused with "
        "127.255.255.254, an excessive volume with 127.255.255.255, and a mistyped zone gets 127.255.255.252: "
        "set RELAYADMIN_DNS_RESOLVER to your own recursive resolver.",
    },
    {
        "zone": "bl.spamcop.net",
        "delist_url": "https://www.spamcop.net/bl.shtml",
        "ipv6": False,
        "enabled": True,
        "notes": "SpamCop, listings from user spam reports; an entry expires by itself about 24 hours after the "
        "last report. Free to query; IPv4 only.",
    },
    {
        "zone": "b.barracudacentral.org",
        "delist_url": "https://www.barracudacentral.org/rbl/removal-request",
        "ipv6": False,
        "enabled": False,
        "notes": "Barracuda Reputation Block List. Free, but only from resolvers registered at "
        "https://www.barracudacentral.org/account/register: register your resolver's address, then enable "
        "this list. IPv4 only.",
    },
]


def add_defaults(apps, schema_editor):
    Blocklist = apps.get_model("policy", "Blocklist")
    for fields in DEFAULTS:
        Blocklist.objects.get_or_create(zone=fields["zone"], defaults=fields)


def remove_defaults(apps, schema_editor):
    apps.get_model("policy", "Blocklist").objects.filter(zone__in=[d["zone"] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("policy", "0009_reputation")]

    operations = [migrations.RunPython(add_defaults, remove_defaults)]
