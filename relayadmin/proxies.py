"""Believe a reverse proxy's X-Forwarded-Proto and X-Forwarded-For only from a listed proxy.

Django's SECURE_PROXY_SSL_HEADER believes the header from anybody: a client talking plain
HTTP to the app could claim "https", and get a secure-only cookie sent over plain HTTP.
This middleware runs first and strips the header from every other peer, so Django's check
only ever sees a header that a trusted proxy set (issue 11, finding 10).

Behind a proxy every request comes from the proxy's address. From a listed proxy, the client
is the right-most X-Forwarded-For address that is not itself a listed proxy, and it becomes
REMOTE_ADDR: the audit log, the node list and any per-address limit see the real client.
Entries further left were written by the client and are never believed.
"""

import netaddr
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

FORWARDED_PROTO = "HTTP_X_FORWARDED_PROTO"
FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"


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


def _address(text: str | None) -> netaddr.IPAddress | None:
    try:
        address = netaddr.IPAddress((text or "").strip().split("%")[0])
    except (netaddr.AddrFormatError, ValueError):
        return None  # a Unix socket, no address at all, or garbage
    return address.ipv4() if address.is_ipv4_mapped() else address


def is_trusted_proxy(proxies: netaddr.IPSet, remote_addr: str | None) -> bool:
    address = _address(remote_addr)
    return address is not None and address in proxies


def forwarded_client(proxies: netaddr.IPSet, header: str) -> str | None:
    """Return the client a chain of listed proxies names in X-Forwarded-For, or None."""
    for entry in reversed(header.split(",")):
        address = _address(entry)
        if address is None:
            return None  # a malformed hop: believe nothing beyond it
        if address not in proxies:
            return str(address)
    return None


class TrustedProxyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.proxies = parse_proxies(settings.RELAYADMIN_TRUSTED_PROXIES)

    def __call__(self, request):
        meta = request.META
        if is_trusted_proxy(self.proxies, meta.get("REMOTE_ADDR")):
            client = forwarded_client(self.proxies, meta.get(FORWARDED_FOR, ""))
            if client is not None:
                meta["REMOTE_ADDR"] = client
        else:
            meta.pop(FORWARDED_PROTO, None)
        return self.get_response(request)
