"""Rewrite stored addresses and networks in the canonical text relayd requires (issue 10).

Earlier versions stored netaddr's text, which writes some IPv6 addresses with a dotted IPv4 tail
(::a:b/128 as ::0.10.0.11/128); relayd refuses that text, and with it the whole snapshot. The
rows are rewritten with relayd's own function; run `manage.py publish` after migrating, so that
the nodes get a revision they accept.
"""

import ipaddress

from django.db import migrations

from relayd.matcher import address_text, network_text


def _canonical_network(text: str) -> str:
    network = ipaddress.ip_network(text, strict=False)
    return network_text(network.version, int(network.network_address), network.prefixlen)


def _canonical_address(text: str) -> str:
    address = ipaddress.ip_address(text)
    return address_text(address.version, int(address))


def _canonical_route(route: str) -> str:
    if not route.startswith("["):
        return route
    host, _, port = route[1:].partition("]")
    return f"[{_canonical_address(host)}]{port}"


def canonicalise(apps, schema_editor):
    for name, field, canonical in (
        ("TrustedNetwork", "network", _canonical_network),
        ("DeniedNetwork", "network", _canonical_network),
        ("InternalAddress", "address", _canonical_address),
        ("LocalDomain", "route", _canonical_route),
    ):
        model = apps.get_model("policy", name)
        for pk, text in model.objects.values_list("pk", field).iterator():
            try:
                fixed = canonical(text)
            except ValueError:
                continue  # not an address this migration can read: publishing names it
            if fixed != text:
                model.objects.filter(pk=pk).update(**{field: fixed})


class Migration(migrations.Migration):
    dependencies = [
        ("policy", "0013_safety"),
    ]

    operations = [
        migrations.RunPython(canonicalise, migrations.RunPython.noop),
    ]
