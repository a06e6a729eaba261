"""What counts as this machine: the one test behind both the bind address that needs no
authentication and the upstreams that count as local (and so stay reachable offline)."""

from __future__ import annotations

import ipaddress
import re
import socket


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback: `localhost`, or an address literal in any
    spelling the system's resolver reads as a loopback address — `127.0.0.2`, `::1`, `[::1]`,
    `::ffff:127.0.0.1`, and the classic IPv4 short forms (`127.1`, `0x7f.1`, `2130706433`),
    which connecting to `http://127.1/` reaches as 127.0.0.1.

    Any other name is not, even one that starts with "127.": DNS decides where such a name
    points, and this check guards both the bind address and which upstreams count as local."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _IPV4_NUMBERS.fullmatch(host):
            return False
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# One to four dot-separated numbers, decimal, octal or hexadecimal: what `inet_aton` (and so the
# resolver) reads as an IPv4 address. Matched first because `inet_aton` itself ignores anything
# after a space, which the resolver does not.
_IPV4_NUMBERS = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]+|[0-9]+)){0,3}")
