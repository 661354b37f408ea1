"""The only code that speaks HTTP to webhook receivers (as `upstream.py` is to the Threads API).

A receiver's URL is checked when it is saved and again before every delivery (`check_url`):
https only, no user name or password in it, and every address its host resolves to must be
public: not private, loopback, link-local, multicast, reserved or unspecified, IPv4 or IPv6
(an IPv4 address mapped into IPv6, 6to4 or Teredo is judged as the IPv4 address it carries).
`WEBHOOK_ALLOW_PRIVATE` lets private and loopback addresses through (the demo, the tests);
the others never pass. `post` then connects to an address that was checked, never looking
the name up again (a second lookup could answer differently: DNS rebinding), with the TLS
certificate checked against the URL's host name. Redirects are never followed (a 3xx is the
answer, its body never read), and nothing waits long: CONNECT_TIMEOUT, READ_TIMEOUT.

Every message of `RefusedURL` and `SendFailed` is safe to show and store: it names the host
and addresses, never the URL's path or query (which may carry the receiver's own token).
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

CONNECT_TIMEOUT = 5.0  # seconds to connect (and finish the TLS handshake)
READ_TIMEOUT = 10.0  # seconds between bytes of the answer
MESSAGE_LENGTH = 300

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedURL(Exception):
    """The URL may not be sent to (or its host cannot be found); the message says why."""


class SendFailed(Exception):
    """Nothing was answered: the connection, the TLS handshake or the wait failed."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`addresses`, every one of them allowed) and what to
    ask for there."""

    host: str  # the URL's host name (lower case, no brackets): TLS checks it, SNI sends it
    port: int
    path: str  # path and query
    host_header: str
    addresses: tuple[Address, ...]


def address_problem(address: Address, *, allow_private: bool) -> str | None:
    """What kind of address refused it ("loopback", ...), or None for one that may be used."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return address_problem(embedded, allow_private=allow_private)
    checks = (
        ("unspecified", address.is_unspecified, False),
        ("multicast", address.is_multicast, False),
        ("link-local", address.is_link_local, False),
        ("loopback", address.is_loopback, True),
        ("reserved", address.is_reserved, False),
        ("private", address.is_private or not address.is_global, True),
    )
    for kind, matches, waivable in checks:
        if matches:
            return None if waivable and allow_private else kind
    return None


def check_url(url: str) -> Target:
    """The URL's target, resolved and checked now; `RefusedURL` says what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise RefusedURL("The URL is not valid (its host or port cannot be read).") from None
    if parts.scheme.lower() != "https":
        raise RefusedURL("Only https:// URLs are allowed: webhooks are never sent in the clear.")
    host = parts.hostname
    if not host:
        raise RefusedURL("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("Leave the user name and password out of the URL.")
    addresses = _resolve(host, port)
    allow = bool(settings.WEBHOOK_ALLOW_PRIVATE)
    for address in addresses:
        problem = address_problem(address, allow_private=allow)
        if problem:
            named = host if host == str(address) else f"{host} resolves to {address}, which"
            raise RefusedURL(
                f"{named} is a {problem} address: webhooks go to public addresses only."
            )
    host_header = parts.netloc.rsplit("@", 1)[-1]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(host, port, path, host_header, addresses)


def _resolve(host: str, port: int) -> tuple[Address, ...]:
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise RefusedURL(f"The host {host} cannot be found (DNS).") from None
    addresses = dict.fromkeys(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found
    )
    if not addresses:
        raise RefusedURL(f"The host {host} has no address.")
    return tuple(addresses)


def post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to the target and return the answer's status (a 3xx is not followed).
    Tries the checked addresses in turn until one connects; raises `SendFailed`."""
    failures = []
    for address in target.addresses:
        pool = urllib3.HTTPSConnectionPool(
            host=str(address),
            port=target.port,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.WEBHOOK_CA_BUNDLE,
            server_hostname=target.host,
            assert_hostname=target.host,
        )
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": target.host_header},
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
            )
            # The status is the whole answer: the body is never read (a receiver dripping
            # one slowly would hold the worker), the connection closed.
            response.close()
            return response.status
        except (NewConnectionError, ConnectTimeoutError) as exc:
            failures.append(f"{address}: {_reason(exc)}")
        except SSLError as exc:
            raise SendFailed(_clip(f"TLS failed with {address}: {_reason(exc)}")) from None
        except ReadTimeoutError:
            raise SendFailed(f"No answer from {address} within {READ_TIMEOUT:g} s.") from None
        except HTTPError as exc:
            raise SendFailed(_clip(f"The exchange with {address} failed: {_reason(exc)}")) from None
        finally:
            pool.close()
    raise SendFailed(_clip(f"Could not connect to port {target.port} ({'; '.join(failures)})."))


def _reason(exc: BaseException) -> str:
    """The innermost cause's words, without the URL urllib3 puts in its own messages."""
    while exc.__context__ is not None and isinstance(exc, HTTPError):
        exc = exc.__context__
    if isinstance(exc, ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text.split(": ", 1)[-1] if isinstance(exc, HTTPError) else text


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LENGTH else text[: MESSAGE_LENGTH - 1] + "…"
