"""The client's IP address, read one way for the login lockout and the audit log.

Without a proxy in front (`TRUSTED_PROXY_COUNT` 0, the default) it is `REMOTE_ADDR`. Behind
N trusted reverse proxies, each appends the address it received the request from to
`CLIENT_IP_HEADER` (X-Forwarded-For), so the client is the N-th entry from the right; anything
further left was written by the client and is not trusted. A request that did not pass
through every proxy, or whose entry is not an address, falls back to `REMOTE_ADDR`.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    remote: str | None = request.META.get("REMOTE_ADDR") or None
    count: int = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    header = request.META.get(settings.CLIENT_IP_HEADER, "")
    hops = [hop.strip() for hop in header.split(",") if hop.strip()]
    if len(hops) < count:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote
