"""Byte- and header-level guards for the fetcher: the address test (globally routable unicast only, after unwrapping
the IPv6 forms that carry an IPv4 host), the Content-Encoding decoder that
refuses decompression bombs, and tolerant parsing of the headers a crawler must trust least.

`FetchFailure` carries an outcome out of a response that must not be read further; `tasks.collect.fetch` turns it into a
`FetchResult`. Nothing here does I/O.
"""

from __future__ import annotations

import email.utils
import ipaddress
import time
import zlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx


class Limits(Protocol):
    max_body_bytes: int
    max_compression_ratio: float


class FetchFailure(Exception):
    def __init__(self, outcome: str, kind: str = "") -> None:
        super().__init__(f"{outcome} {kind}")
        self.outcome, self.kind = outcome, kind


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are the IPv4 host


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries: IPv4-mapped, 6to4 (2002::/16), Teredo (2001::/32: server and
    client), NAT64 (64:ff9b::/96). A packet to the IPv6 form may end up at the IPv4 host, so both are vetted."""
    found = [a for a in (addr.ipv4_mapped, addr.sixtofour) if a is not None]
    if addr.teredo is not None:
        found.extend(addr.teredo)
    if addr in _NAT64:
        found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def _refused(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global alone is not enough on Python 3.11: it calls fec0::/10 (site-local) and 64:ff9b::/96 global.
    return (not addr.is_global or addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified
            or (isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local))


def blocked_ip(ip: str) -> bool:
    """True unless `ip` (and every IPv4 address it wraps) is globally routable unicast: private, shared (CGNAT,
    100.64.0.0/10), loopback, link-local, site-local, multicast, reserved and documentation ranges are refused."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return True  # not an address at all: nothing to vet, so nothing to connect to
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if any(_refused(a) for a in inner):
            return True
        if inner and (addr.ipv4_mapped or addr.sixtofour or addr in _NAT64):
            return False  # a translation prefix: exactly as reachable as the IPv4 host it leads to
    return _refused(addr)  # Teredo (2001::/32) is refused here even with public endpoints: not globally routable


class BodyDecoder:
    """Incremental Content-Encoding decoder that refuses to inflate past the caps (decompression bombs)."""

    def __init__(self, encoding: str, limits: Limits) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self.zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self.zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.zlib = zlib.decompressobj()
        else:
            raise FetchFailure("error", "unsupported_encoding")
        self.limits, self.parts, self.size, self.raw = limits, [], 0, 0

    def feed(self, chunk: bytes) -> bool:
        """Add raw bytes; True when the decoded body reached the size cap (caller stops reading)."""
        self.raw += len(chunk)
        if self.zlib is None:
            data = chunk
        else:
            try:
                data = self.zlib.decompress(chunk, self.limits.max_body_bytes - self.size + 1)
            except zlib.error as exc:
                raise FetchFailure("error", "bad_encoding") from exc
        self.parts.append(data)
        self.size += len(data)
        # A body that inflates far beyond what was sent is a bomb, whether or not it reached the cap yet.
        limits = self.limits
        if self.size > min(limits.max_body_bytes, 1 << 20) and self.size > self.raw * limits.max_compression_ratio:
            raise FetchFailure("decompression_bomb")
        return self.size > self.limits.max_body_bytes

    def finish(self) -> None:
        if self.zlib is not None:
            # Bounded: input left unconsumed means the cap was hit, and feed() already stopped the read.
            self.parts.append(self.zlib.flush())

    def output(self) -> bytes:
        return b"".join(self.parts)[: self.limits.max_body_bytes]


def content_length(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:  # a malformed header: let the streamed cap decide
        return 0


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def peer_ip(resp: httpx.Response) -> str:
    stream = resp.extensions.get("network_stream")
    addr = stream.get_extra_info("server_addr") if stream is not None else None
    return str(addr[0]) if addr else ""


def archived_headers(headers: list[tuple[str, str]], body_len: int) -> list[tuple[str, str]]:
    """Headers as archived: the body is stored decoded, so encoding headers are renamed like Common Crawl does."""
    out = []
    for name, value in headers:
        low = name.lower()
        if low in ("content-encoding", "transfer-encoding", "content-length"):
            out.append((f"X-Crawler-{name}", value))
        else:
            out.append((name, value))
    out.append(("Content-Length", str(body_len)))
    return out
