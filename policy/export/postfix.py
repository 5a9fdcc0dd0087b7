"""Render a policy snapshot as Postfix tables and main.cf/master.cf snippets.

The tables are read by Postfix at process start: after installing a new export, run
"postfix reload". They use cidr: and texthash:, which need no postmap step.
"""

from __future__ import annotations

from policy.export import BUNDLE_DIRECTORY, comment, describe, domain_specificity, profiles, specificity
from relayd.config import DeniedNetwork, LocalDomain, Snapshot, TrustedNetwork
from relayd.hostport import split_host_port

TITLE = "Postfix"
DESCRIPTION = (
    "cidr tables for mynetworks and the NEVER list, relay_domains, transport, and main.cf / master.cf snippets."
)

MYNETWORKS = "mynetworks.cidr"
NEVER_RELAY = "never_relay.cidr"
RELAY_DOMAINS = "relay_domains"
TRANSPORT = "transport"
MAIN_CF = "main.cf.snippet"
MASTER_CF = "master.cf.snippet"
LIMITS_NOTE = "relay_profiles.txt"

# Postfix's default (postconf -d, 2.8 to 3.10) without relay_domains: see _main_cf.
PARENT_DOMAIN_MATCHES_SUBDOMAINS = (
    "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, "
    "qmqpd_authorized_clients, smtpd_access_maps"
)


def render(policy: Snapshot) -> dict[str, str]:
    """Return the Postfix files for policy as {file name: body}."""
    files = {
        MYNETWORKS: _mynetworks(policy.trusted_networks, policy.restrictions.allow_listed_ips),
        NEVER_RELAY: _never_relay(policy.denied_networks),
        RELAY_DOMAINS: _relay_domains(policy.local_domains),
        TRANSPORT: _transport(policy.local_domains),
        MAIN_CF: _main_cf(policy),
        MASTER_CF: _master_cf(policy),
    }
    note = _limits_note(policy)
    if note:
        files[LIMITS_NOTE] = note
    return files


def _limits_note(policy: Snapshot) -> str | None:
    """Return the relay profiles this export does not enforce, or None when there are none.

    Postfix has no per-network or per-user hourly limits: its anvil counts per client address per
    minute, for all clients alike, and sender or TLS rules per network would need restriction
    classes that this export does not write. Rather than enforce part of a profile silently, the
    bundle says what is left out.
    """
    users, networks = profiles.user_scopes(policy), profiles.network_scopes(policy)
    if not users and not networks:
        return None
    lines = [
        "# Relay profiles that this Postfix export does NOT enforce (issue 15).",
        "# Postfix cannot express them natively: its anvil limits (smtpd_client_message_rate_limit,",
        "# smtpd_client_recipient_rate_limit) count per client address per minute, for every client",
        "# alike, not per trusted network or SMTP user per hour; per-network sender domains and TLS",
        "# would need restriction classes. Enforce these limits by running relayd in front of Postfix,",
        "# by a policy service (check_policy_service), or use the Exim export, which enforces them.",
        "",
    ]
    for user in users:
        lines.append(f"SMTP user {comment(user.username)}: {profiles.limits_text(user.profile)}")
    for scope in networks:
        nested = f" (less {', '.join(map(str, scope.nested))})" if scope.nested else ""
        lines.append(f"trusted network {scope.network}{nested}: {profiles.limits_text(scope.profile)}")
    return "\n".join(lines) + "\n"


def table_path(name: str) -> str:
    """Return where main.cf finds the table name: in relayadmin/ under Postfix's config directory."""
    return f"$config_directory/{BUNDLE_DIRECTORY}/{name}"


def nexthop(route: str) -> str:
    """Return a snapshot route (host:port or [ipv6]:port) as a transport(5) next hop without MX lookup.

    relay is Postfix's transport for relay_domains (the smtp client on a queue of its own, so that
    inbound mail does not wait behind outbound mail); the brackets make it connect to exactly this
    host instead of looking up MX records, and are required around an IP address.
    """
    host, port, _ = split_host_port(route)
    return f"relay:[{host}]:{port}"


def _mynetworks(trusted: tuple[TrustedNetwork, ...], used: bool) -> str:
    lines = [
        '# Trusted networks ("Hosts and clients with these IP addresses"): a cidr_table(5) for mynetworks.',
        "# IPv6 networks are written without brackets, as cidr tables expect; only IPv6 written inline in",
        "# main.cf needs them ([2001:db8::]/32). main.cf.snippet carves the denied networks out of it.",
    ]
    if not used:
        lines.append('# "Hosts and clients with these IP addresses" is off: main.cf.snippet does not use this table.')
    if not trusted:
        lines.append("# There are no trusted networks: no client may relay because of its address.")
    for entry in sorted(trusted, key=lambda entry: specificity(entry.network)):
        lines.append("")
        lines.append(f"# {describe(entry.description, entry.added_by)}")
        if entry.expires_at is not None:
            lines.append(f"# Expires {entry.expires_at.isoformat(timespec='seconds')}.")
        lines.append(f"{entry.network}\tOK")
    return "\n".join(lines) + "\n"


def _never_relay(denied: tuple[DeniedNetwork, ...]) -> str:
    lines = [
        '# Denied networks ("can NEVER route mail through this server"): a cidr_table(5) for',
        "# check_client_access in smtpd_relay_restrictions, and negated in mynetworks (where only a",
        "# match counts, not the result). Their clients can never relay; like any Internet host they",
        "# may still send to our own domains. Most specific networks come first, because Postfix stops",
        "# at the first match.",
    ]
    if not denied:
        lines.append("# There are no denied networks.")
    for entry in sorted(denied, key=lambda entry: specificity(entry.network)):
        lines.append("")
        lines.append(f"# {describe(entry.description, entry.added_by)}")
        lines.append(f"{entry.network}\tREJECT 5.7.1 Relaying denied: {entry.network} can never relay")
    return "\n".join(lines) + "\n"


def _relay_domains(domains: tuple[LocalDomain, ...]) -> str:
    lines = [
        "# Our domains: a texthash table for relay_domains. example.com matches only itself and",
        "# .example.com only its subdomains, because main.cf.snippet leaves relay_domains out of",
        "# parent_domain_matches_subdomains.",
    ]
    if not domains:
        lines.append("# There are no local domains: mail to any domain is relaying.")
    for entry in sorted(domains, key=lambda entry: domain_specificity(entry.domain)):
        lines.extend(f"{pattern}\tOK" for pattern in _patterns(entry))
    return "\n".join(lines) + "\n"


def _transport(domains: tuple[LocalDomain, ...]) -> str:
    lines = [
        "# Next hops of our domains: a texthash table for transport_maps. A domain without a route of",
        '# its own gets the empty entry ":" ("do not change": your relayhost, then MX), which also keeps',
        "# the route of a parent domain that includes its subdomains from applying to it.",
    ]
    if not domains:
        lines.append("# There are no local domains.")
    for entry in sorted(domains, key=lambda entry: domain_specificity(entry.domain)):
        result = ":" if entry.route is None else nexthop(entry.route)
        lines.extend(f"{pattern}\t{result}" for pattern in _patterns(entry))
    return "\n".join(lines) + "\n"


def _main_cf(policy: Snapshot) -> str:
    restrictions = policy.restrictions
    never = table_path(NEVER_RELAY)
    relay = ["permit_auth_destination", f"check_client_access cidr:{never}"]
    decision = [
        "#   1. a recipient in our own domains (or this host's), without sender-specified routing, is",
        "#      accepted from any client, denied networks included: that is not relaying;",
        "#   2. a client in a denied network can never relay (REJECT from the never_relay.cidr table);",
    ]
    if restrictions.allow_listed_ips:
        relay.append("permit_mynetworks")
        decision.append('#   3. "Hosts and clients with these IP addresses" is on: trusted networks relay;')
    else:
        decision.append('#   3. "Hosts and clients with these IP addresses" is off: no permit_mynetworks;')
    if restrictions.allow_authenticated:
        relay.append("permit_sasl_authenticated")
        decision.append('#   4. "Hosts and clients that successfully authenticate" is on: they relay;')
    else:
        decision.append(
            '#   4. "Hosts and clients that successfully authenticate" is off: no permit_sasl_authenticated;'
        )
    relay.append("reject_unauth_destination")
    # Postfix warns about a parameter nothing uses, so the internal listeners' list exists only with them.
    listeners = restrictions.allow_internal_addresses and bool(policy.internal_addresses)
    if listeners:
        decision.append('#   5. "Hosts and clients connecting to these internal addresses": see master.cf.snippet;')
    elif restrictions.allow_internal_addresses:
        decision.append('#   5. "Hosts and clients connecting to these internal addresses" is on, but none is listed;')
    else:
        decision.append('#   5. "Hosts and clients connecting to these internal addresses" is off;')
    decision.append("#   6. everything else is refused, 550 5.7.1 (reject_unauth_destination).")

    lines = [
        "# main.cf settings for the relay policy.",
        "# Install: unpack the bundle into /etc/postfix (the tables land in /etc/postfix/relayadmin/),",
        "# delete your own settings of the parameters below from main.cf, append this file to it, then",
        '# run "postfix check" and "postfix reload". Postfix warns "overriding earlier entry" about a',
        "# setting you missed.",
        "",
        *_mynetworks_setting(restrictions.allow_listed_ips, never),
        "",
        "# Our domains and their next hops. The default parent_domain_matches_subdomains includes",
        "# relay_domains, which would make example.com match its subdomains too, even for a domain that",
        "# does not include them; this is the default without relay_domains, so that subdomains match",
        "# only where the table says .example.com. The transport table uses .example.com as well.",
        f"parent_domain_matches_subdomains = {PARENT_DOMAIN_MATCHES_SUBDOMAINS}",
        f"relay_domains = texthash:{table_path(RELAY_DOMAINS)}",
        f"transport_maps = texthash:{table_path(TRANSPORT)}",
        "",
    ]
    if restrictions.allow_authenticated:
        lines += [
            '# "Hosts and clients that successfully authenticate" is on: offer AUTH, only after STARTTLS.',
            "# The accounts are not exported (relayadmin keeps Django PBKDF2 hashes, which Cyrus SASL and",
            "# Dovecot cannot verify): point smtpd_sasl_type and smtpd_sasl_path at your account store,",
            "# and configure a TLS certificate (smtpd_tls_cert_file, smtpd_tls_key_file).",
            "smtpd_sasl_auth_enable = yes",
        ]
    else:
        lines.append('# "Hosts and clients that successfully authenticate" is off: AUTH grants no relaying here.')
    lines += [
        "# AUTH is never offered before STARTTLS, so passwords never cross the network in clear.",
        "smtpd_tls_auth_only = yes",
        "",
        "# Sender-specified routing (user%host@domain, host!user@domain, user@host@domain) to our",
        "# domains is refused from every client that the restrictions below do not permit to relay. No",
        "# is Postfix's default; it is stated so that an inherited setting cannot change it.",
        "allow_untrusted_routing = no",
        "",
        "# Refused relaying is 550 5.7.1, as relayd answers it; Postfix's defaults are 554.",
        "# access_map_reject_code is the code of the REJECT entries in never_relay.cidr; it also applies",
        "# to REJECT in your other access tables (still a permanent refusal).",
        "relay_domains_reject_code = 550",
        "access_map_reject_code = 550",
        "",
        "# The relay decision, in this order:",
        *decision,
        "# A service with its own -o smtpd_relay_restrictions in master.cf (e.g. submission) is not",
        "# governed by this. Keep relay decisions out of smtpd_recipient_restrictions: a",
        "# reject_unauth_destination there refuses relaying that this list permits.",
        _parameter("smtpd_relay_restrictions", relay),
    ]
    if listeners:
        lines += [
            "",
            "# Relay decision of the internal-address listeners in master.cf.snippet: as above, except that",
            "# every client outside the denied networks may relay. Postfix refuses to start an smtpd whose",
            '# relay restrictions permit everything before any reject_unauth_destination (a bare "permit");',
            '# "check_client_access static:OK" is that same decision in a form the guard accepts.',
            _parameter(
                "relayadmin_internal_relay_restrictions",
                [
                    "permit_auth_destination",
                    f"check_client_access cidr:{never}",
                    "check_client_access static:OK",
                    "reject_unauth_destination",
                ],
            ),
        ]
    return "\n".join(lines) + "\n"


def _mynetworks_setting(allow_listed_ips: bool, never: str) -> list[str]:
    """Return the main.cf lines that set mynetworks and the defaults that favour it."""
    lines = [
        "# Trusted networks. mynetworks is always set, never left to mynetworks_style, whose subnet",
        "# default trusts every host on the server's own subnets. It trusts no client, not even",
        "# localhost, unless a trusted network says so (local submission through sendmail(1) and pickup",
        "# does not pass through these restrictions).",
    ]
    if allow_listed_ips:
        lines += [
            "# A denied network can never relay, even inside a trusted one, so its addresses are carved",
            '# out of mynetworks itself by the negated table ("!" in a match list, Postfix 2.4 and later;',
            "# the first pattern that matches decides). Excluding them here, and not only by the REJECT",
            "# before permit_mynetworks, keeps every other feature that trusts $mynetworks (the",
            "# postscreen and connection-rate exceptions below) from favouring them too.",
            f"mynetworks = !cidr:{never}, cidr:{table_path(MYNETWORKS)}",
        ]
    else:
        lines += [
            '# "Hosts and clients with these IP addresses" is off: no client is trusted for its address,',
            "# and nothing that trusts $mynetworks favours one.",
            "mynetworks =",
        ]
    lines += [
        "# Postfix's defaults that favour $mynetworks, stated so that an inherited setting cannot favour",
        "# a denied network or, with the checkbox off, any network: postscreen lets mynetworks skip its",
        "# tests, and anvil's connection and rate limits do not count it.",
        "postscreen_access_list = permit_mynetworks",
        "smtpd_client_event_limit_exceptions = $mynetworks",
    ]
    return lines


def _master_cf(policy: Snapshot) -> str:
    lines = [
        '# master.cf services for "Hosts and clients connecting to these internal addresses".',
        "# Postfix has no restriction that tests the server address a client connected to, so each",
        "# internal address gets an smtpd listener of its own, whose relay restrictions",
        "# ($relayadmin_internal_relay_restrictions in main.cf.snippet) let every client relay except",
        "# those in the denied networks.",
    ]
    if not policy.restrictions.allow_internal_addresses:
        lines.append("# The checkbox is off: there is nothing to add to master.cf.")
        return "\n".join(lines) + "\n"
    if not policy.internal_addresses:
        lines.append("# The checkbox is on but no internal address is listed: there is nothing to add to master.cf.")
        return "\n".join(lines) + "\n"
    lines += [
        "# Install: append to /etc/postfix/master.cf. A listener on an address and one on all addresses",
        "# cannot share a port, so the stock smtp service must stop listening on all addresses: list your",
        "# other addresses in inet_interfaces (the stock service then listens on those only), or replace",
        '# its "smtp inet" line by one "ADDRESS:smtp inet" line per address.',
    ]
    for entry in policy.internal_addresses:
        # master.cf needs brackets around an IPv6 host, as in [2001:db8::10]:smtp.
        host = f"[{entry.address}]" if entry.address.version == 6 else str(entry.address)
        lines += [
            "",
            f"# {describe(entry.description)}",
            f"{host}:smtp inet n - - - - smtpd",
            "  -o syslog_name=postfix/relayadmin-internal",
            "  -o smtpd_relay_restrictions=$relayadmin_internal_relay_restrictions",
        ]
    return "\n".join(lines) + "\n"


def _patterns(entry: LocalDomain) -> list[str]:
    return [entry.domain, f".{entry.domain}"] if entry.include_subdomains else [entry.domain]


def _parameter(name: str, values: list[str]) -> str:
    """Return a main.cf parameter with one value per continuation line (indented lines continue it)."""
    return f"{name} =\n" + ",\n".join(f"    {value}" for value in values)
