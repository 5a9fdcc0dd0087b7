"""Believe a reverse proxy's X-Forwarded-Proto only when the request comes from a listed proxy.

Django's SECURE_PROXY_SSL_HEADER believes the header from anybody: a client talking plain
HTTP to the app could claim "https", and get a secure-only cookie sent over plain HTTP.
This middleware runs first and strips the header from every other peer, so Django's check
only ever sees a header that a trusted proxy set (issue 11, finding 10).
"""

import netaddr
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

FORWARDED_PROTO = "HTTP_X_FORWARDED_PROTO"


def parse_proxies(entries) -> netaddr.IPSet:
    """Return the addresses and networks of RELAYADMIN_TRUSTED_PROXIES; refuse anything else."""
    proxies = netaddr.IPSet()
    for entry in entries:
        try:
            proxies.add(netaddr.IPNetwork(entry))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            raise ImproperlyConfigured(
                f"RELAYADMIN_TRUSTED_PROXIES: “{entry}” is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/24)."
            ) from None
    return proxies


def is_trusted_proxy(proxies: netaddr.IPSet, remote_addr: str | None) -> bool:
    try:
        address = netaddr.IPAddress((remote_addr or "").split("%")[0])
    except (netaddr.AddrFormatError, ValueError):
        return False  # a Unix socket or no address at all: nobody we listed
    if address.is_ipv4_mapped():
        address = address.ipv4()
    return address in proxies


class TrustedProxyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.proxies = parse_proxies(settings.RELAYADMIN_TRUSTED_PROXIES)

    def __call__(self, request):
        if FORWARDED_PROTO in request.META and not is_trusted_proxy(self.proxies, request.META.get("REMOTE_ADDR")):
            del request.META[FORWARDED_PROTO]
        return self.get_response(request)
