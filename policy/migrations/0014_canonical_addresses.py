"""Rewrite stored addresses and networks in the canonical text relayd requires (issue 10).

Earlier versions stored netaddr's text, which writes some IPv6 addresses with a dotted IPv4 tail
(::a:b/128 as ::0.10.0.11/128), and internal addresses in PostgreSQL's inet type, which does the
same; relayd refuses that text, and with it the whole snapshot. Internal addresses become text,
and every row is rewritten with relayd's own function. Run `manage.py publish` after migrating,
so that the nodes get a revision they accept.
"""

import ipaddress

from django.db import migrations, models

from relayd.matcher import address_text, network_text


def _canonical_network(text: str) -> str:
    network = ipaddress.ip_network(text, strict=False)
    return network_text(network.version, int(network.network_address), network.prefixlen)


def _canonical_address(text: str) -> str:
    # An inet column cast to text carries a /32 or /128.
    address = ipaddress.ip_interface(text).ip
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
        migrations.AlterField(
            model_name="internaladdress",
            name="address",
            field=models.CharField(
                help_text="An address of this server, e.g. 192.168.1.10 on the internal network card.",
                max_length=39,
                unique=True,
                verbose_name="address",
            ),
        ),
        migrations.RunPython(canonicalise, migrations.RunPython.noop),
    ]
