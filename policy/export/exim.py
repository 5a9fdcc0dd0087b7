"""Render a policy snapshot as Exim configuration: named lists, an RCPT ACL and a manualroute router.

Each file goes into its own section of the Exim configuration with .include; Exim reads its
configuration at start, so restart Exim (or send it SIGHUP) after installing a new export.
"""

from __future__ import annotations

from policy.export import BUNDLE_DIRECTORY, comment, describe, domain_specificity, profiles, specificity
from relayd.config import LocalDomain, Snapshot
from relayd.hostport import split_host_port

TITLE = "Exim"
DESCRIPTION = "Named host and domain lists with the main options they need, an RCPT ACL and a manualroute router."

MAIN = "main.conf"
ACL = "acl.conf"
ROUTER = "router.conf"

TRUSTED_LIST = "relay_from_hosts"
DENIED_LIST = "relayadmin_never_relay_hosts"
INTERNAL_LIST = "relayadmin_internal_addresses"
DOMAIN_LIST = "relay_to_domains"
HOST_DOMAINS_LIST = "relayadmin_host_domains"
# Main options whose Exim defaults would refuse, as a syntax error, recipients that relayd and
# Postfix decide on (docs/verdicts.md): the install instructions list them with the named lists.
OPTIONS = ("auth_advertise_hosts", "allow_domain_literals", "strip_trailing_dot")


def render(policy: Snapshot) -> dict[str, str]:
    """Return the Exim files for policy as {file name: body}."""
    return {MAIN: _main(policy), ACL: _acl(policy), ROUTER: _router(policy)}


def route_host(route: str) -> str:
    """Return a snapshot route (host:port or [ipv6]:port) as an item of a manualroute host list.

    Colons separate the hosts of that list, so the port follows a doubled colon and each colon of
    an IPv6 address is doubled too: [2001:db8::25]:25 becomes [2001::db8::::25]::25.
    """
    host, port, bracketed = split_host_port(route)
    return f"[{host.replace(':', '::')}]::{port}" if bracketed else f"{host}::{port}"


def _main(policy: Snapshot) -> str:
    trusted = sorted(policy.trusted_networks, key=lambda entry: specificity(entry.network))
    denied = sorted(policy.denied_networks, key=lambda entry: specificity(entry.network))
    domains = sorted(policy.local_domains, key=lambda entry: domain_specificity(entry.domain))
    lines = [
        "# Exim main-section settings for the relay policy.",
        f"# Install: unpack the bundle into /etc/exim4 (the files land in /etc/exim4/{BUNDLE_DIRECTORY}/),",
        "# then in the main section (before the first begin) add",
        f"#   .include /etc/exim4/{BUNDLE_DIRECTORY}/{MAIN}",
        f"# and delete your own definitions of the lists {TRUSTED_LIST} and {DOMAIN_LIST} and of the",
        f"# options {', '.join(OPTIONS[:-1])} and {OPTIONS[-1]}:",
        "# Exim refuses a named list or an option that is defined twice. The ACL uses only the lists",
        "# defined here.",
        "# Host lists start with <; which makes ; their separator, because IPv6 addresses contain colons.",
        "",
        '# Trusted networks ("Hosts and clients with these IP addresses").',
        *(
            f"#   {entry.network}: {describe(entry.description, entry.added_by)}"
            + (f", expires {entry.expires_at.isoformat(timespec='seconds')}" if entry.expires_at else "")
            for entry in trusted
        ),
        _named_list("hostlist", TRUSTED_LIST, [str(entry.network) for entry in trusted], ";"),
        "",
        '# Denied networks ("can NEVER route mail through this server"): they can never relay; like any',
        "# Internet host they may still send to our own domains.",
        *(f"#   {entry.network}: {describe(entry.description, entry.added_by)}" for entry in denied),
        _named_list("hostlist", DENIED_LIST, [str(entry.network) for entry in denied], ";"),
        "",
        "# Internal addresses: clients connecting to one of these local addresses ($interface_address)",
        '# may relay while "Hosts and clients connecting to these internal addresses" is on.',
        *(f"#   {entry.address}: {describe(entry.description)}" for entry in policy.internal_addresses),
        _named_list("hostlist", INTERNAL_LIST, [str(entry.address) for entry in policy.internal_addresses], ";"),
        "",
        "# Our domains. *.example.com matches the subdomains of example.com only, so a domain that",
        "# includes its subdomains is listed twice.",
        _named_list("domainlist", DOMAIN_LIST, [pattern for entry in domains for pattern in _patterns(entry)]),
        "",
        "# This host's own names, accepted from any client like Postfix's mydestination: its primary",
        "# host name (@), localhost and address literals of its own IP addresses (@[]). That is local",
        "# delivery, not relaying; domains it delivers to locally beyond these belong in relayadmin's",
        "# local domains.",
        _named_list("domainlist", HOST_DOMAINS_LIST, ["@", "localhost", "@[]"]),
        "",
        "# Recipients are parsed as relayd and Postfix parse them, so that the relay decision, not a",
        "# syntax error, answers them: a trailing dot on a domain is ignored, and address literals",
        "# (user@[192.0.2.1]) are recipients like any other: local for this host's own addresses,",
        "# relaying (refused unless the client may relay) for any other.",
        "strip_trailing_dot = true",
        "allow_domain_literals = true",
        "",
        "# AUTH is offered only after STARTTLS, so passwords never cross the network in clear.",
        "auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}",
    ]
    return "\n".join(lines) + "\n"


def _acl(policy: Snapshot) -> str:
    restrictions = policy.restrictions
    lines = [
        "# Exim ACLs for the relay policy.",
        "# Install: in the ACL section (after begin acl) add",
        f"#   .include /etc/exim4/{BUNDLE_DIRECTORY}/{ACL}",
        "# and make relayadmin_check_rcpt the relay decision of your RCPT ACL: near the top of",
        "# acl_check_rcpt (Debian: conf.d/acl/30_exim4-config_check_rcpt) add",
        "#   require acl = relayadmin_check_rcpt",
        "# then remove the statements there that decide relaying (accept hosts = +relay_from_hosts,",
        "# accept authenticated = *, require ... domains = +local_domains : +relay_to_domains). A later",
        "# accept cannot reopen what this ACL denies, but those statements would refuse relaying that",
        "# the policy allows. Recipient verification and your other checks stay where they are.",
        "",
        "# Accept if the client may relay, deny if not. A denied network never may, whatever else holds.",
        "relayadmin_may_relay:",
        f"  deny    hosts         = +{DENIED_LIST}",
    ]
    if restrictions.allow_listed_ips:
        lines.append(f"  accept  hosts         = +{TRUSTED_LIST}")
    else:
        lines.append('  # "Hosts and clients with these IP addresses" is off.')
    if restrictions.allow_authenticated:
        lines.append("  accept  authenticated = *")
    else:
        lines.append('  # "Hosts and clients that successfully authenticate" is off.')
    if restrictions.allow_internal_addresses:
        lines.append(f"  accept  condition     = ${{if match_ip{{$interface_address}}{{+{INTERNAL_LIST}}}}}")
    else:
        lines.append('  # "Hosts and clients connecting to these internal addresses" is off.')
    lines += [
        "  deny",
        "",
        "# Decide whether a recipient may be relayed; accept lets the calling ACL go on with its checks.",
        "relayadmin_check_rcpt:",
        "  # Sender-specified routing (%, ! or @ in a quoted local part) only from clients that may",
        "  # relay, like Postfix's allow_untrusted_routing = no. Exim drops RFC 5321 source routes",
        "  # (@a:user@b) by itself and decides on user@b, as relayd does; it refuses an unquoted",
        '  # user@remote@local as a syntax error (501), which relayd and Postfix read as "user@remote"@local.',
        "  deny    message     = 550 5.7.1 Sender-specified routing denied",
        "          local_parts = ^.*[@%!]",
        "          !acl        = relayadmin_may_relay",
        "  # Our own domains, and this host's, are accepted from any client: that is not relaying.",
        f"  accept  domains     = +{HOST_DOMAINS_LIST} : +{DOMAIN_LIST}",
        "  deny    message     = 550 5.7.1 Relaying denied: your network can never relay",
        f"          hosts       = +{DENIED_LIST}",
        *_profile_statements(policy),
        "  accept  acl         = relayadmin_may_relay",
        "  deny    message     = 550 5.7.1 Relaying denied",
    ]
    return "\n".join(lines) + "\n"


def _profile_statements(policy: Snapshot) -> list[str]:
    """Return the ACL statements of the relay profiles, reached only by recipients being relayed.

    An authenticated client is held to its SMTP user's profile, any other to its trusted network's
    (the network less the more specific trusted networks inside it), as relayd does. Exim's
    ratelimit is a smoothed rate over the hour, where relayd counts per clock hour: both let the
    limit through in an hour, and Exim's smoothing holds a burst back sooner.
    """
    users, networks = profiles.user_scopes(policy), profiles.network_scopes(policy)
    if not users and not networks:
        return []
    lines = [
        "  # Relay profiles: limits that narrow the right to relay (docs/design.md item 6). Only recipients",
        "  # that are being relayed get here; our own domains were accepted above.",
    ]
    for user in users:
        lines.append(f"  # SMTP user {comment(user.username)}: {profiles.limits_text(user.profile)}")
        scope = [f"          authenticated  = {user.username}"]
        lines += _limit_statements(user.profile, scope, f"SMTP user {user.username}", f"user-{user.username}")
    for network in networks:
        lines.append(f"  # Trusted network {network.network}: {profiles.limits_text(network.profile)}")
        hosts = " ; ".join([*(f"!{inner}" for inner in network.nested), str(network.network)])
        scope = [f"          hosts          = <; {hosts}"]
        if policy.restrictions.allow_authenticated:
            scope.append("          !authenticated = *")
        key = "net-" + str(network.network).replace("/", "-").replace(":", ".")
        lines += _limit_statements(network.profile, scope, f"trusted network {network.network}", key)
    return lines


def _limit_statements(profile, scope: list[str], label: str, key: str) -> list[str]:
    lines = []
    if profile.require_tls:
        lines += ["  deny    message        = 530 5.7.0 Must issue a STARTTLS command first", *scope]
        lines.append("          !encrypted     = *")
    if profile.allowed_sender_domains:
        patterns = " : ".join(f"{domain} : *.{domain}" for domain in profile.allowed_sender_domains)
        lines += ["  deny    message        = 553 5.7.1 Sender address rejected: not allowed to relay for this sender"]
        lines += [*scope, f"          !sender_domains = {patterns}"]
    for what, limit, per in (
        ("messages", profile.rate_limit_per_hour, "per_mail"),
        ("recipients", profile.recipients_per_hour, "per_rcpt"),
    ):
        if limit:
            lines += [f"  defer   message        = 450 4.7.1 Error: too many {what} from {label}, try again later"]
            lines += [*scope, f"          ratelimit      = {limit} / 1h / {per} / relayadmin-{what}-{key}"]
    return lines


def _router(policy: Snapshot) -> str:
    domains = sorted(policy.local_domains, key=lambda entry: domain_specificity(entry.domain))
    lines = [
        "# Exim router that sends our domains to their next hops.",
    ]
    if all(entry.route is None for entry in domains):
        lines.append("# No local domain has a route of its own: there is nothing to add.")
        return "\n".join(lines) + "\n"
    # Both lists stop at their first match and run most specific first. The domains list excludes
    # ("!") a domain without a route of its own, so that the route of a parent domain including
    # its subdomains does not apply to it; route_list then sees only domains whose most specific
    # entry has a route, which is its first match.
    conditions = [
        f"! {pattern}" if entry.route is None else pattern for entry in domains for pattern in _patterns(entry)
    ]
    routes = [
        f"{pattern} {route_host(entry.route)}" for entry in domains if entry.route for pattern in _patterns(entry)
    ]
    lines += [
        "# Install: in the routers section, before your dnslookup router (the first router that accepts",
        "# an address routes it), add",
        f"#   .include /etc/exim4/{BUNDLE_DIRECTORY}/{ROUTER}",
        "# The next hop is used as given, without MX lookup; no_more stops a failed next hop from",
        "# falling through to MX routing. Domains without a route of their own are left to your other",
        "# routers (smarthost, then MX). remote_smtp is the smtp transport of the stock configuration.",
        "relayadmin_routes:",
        "  driver     = manualroute",
        "  transport  = remote_smtp",
        _continued("  domains    = ", " : ", conditions),
        _continued("  route_list = ", " ; ", routes),
        "  no_more",
    ]
    return "\n".join(lines) + "\n"


def _named_list(kind: str, name: str, items: list[str], separator: str = ":") -> str:
    """Return a named list; a separator other than the colon is announced by a leading <."""
    prefix = f"{kind} {name} =" + ("" if separator == ":" else f" <{separator}")
    if not items:
        return prefix
    return _continued(f"{prefix} ", f" {separator} ", items)


def _continued(prefix: str, separator: str, items: list[str]) -> str:
    """Return an option with one list item per line; a trailing backslash continues an Exim line."""
    if len(items) == 1:
        return prefix + items[0]
    indent = " " * 4
    return prefix + "\\\n" + f"{separator.rstrip()} \\\n".join(indent + item for item in items)


def _patterns(entry: LocalDomain) -> list[str]:
    return [entry.domain, f"*.{entry.domain}"] if entry.include_subdomains else [entry.domain]
