"""Resolve once, vet every address, connect to the vetted one: the fetcher's defence against SSRF and DNS rebinding.

`AddressBook.pin(host, port)` resolves a name once per crawl (through an injectable `Resolver`), refuses it when any
of its addresses is not globally routable (`tasks.collect.fetch_guards.blocked_ip`) unless `host:port` is on the
allow-list, and records the first address as the pin. `pinned_transport` is an httpx transport whose connections go
only to pinned addresses: httpx never resolves a name itself, so a second DNS answer cannot redirect a request, while
the URL keeps its name, so the Host header and TLS SNI (and certificate checks) stay those of the original host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from tasks.collect.fetch_guards import blocked_ip

Resolver = Callable[[str, int], Awaitable[list[str]]]  # (host, port) -> addresses, in preference order


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def netloc_key(host: str, port: int) -> str:
    """`host:port` as allow-list entries spell it (`[::1]:8080` for IPv6)."""
    host = host.lower().strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AddressBook:
    def __init__(self, resolver: Resolver, allow: Iterable[str]) -> None:
        self.resolver, self.allow = resolver, frozenset(a.lower() for a in allow)
        self.pins: dict[tuple[str, int], str] = {}
        self.refused: dict[tuple[str, int], str] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def pin(self, host: str, port: int) -> tuple[str, str] | None:
        """None when `host:port` may be fetched (its address is pinned), else (outcome, error kind)."""
        key = (host.lower().strip("[]"), port)
        async with self._locks.setdefault(key, asyncio.Lock()):  # one lookup per name, even under concurrency
            if key in self.pins:
                return None
            if key in self.refused:
                return ("blocked_address", "")
            try:
                addresses = [str(ipaddress.ip_address(key[0]))]  # an IP literal needs no lookup
            except ValueError:
                try:
                    addresses = await self.resolver(key[0], port)
                except (OSError, UnicodeError):
                    return ("error", "dns_error")
            if not addresses:
                return ("error", "dns_error")
            if netloc_key(*key) not in self.allow and any(blocked_ip(a) for a in addresses):
                # Any bad answer refuses the name: a resolver may rotate through its answers.
                self.refused[key] = addresses[0]
                return ("blocked_address", "")
            self.pins[key] = addresses[0]
            return None


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the pinned address of (host, port); a name nobody pinned is refused, never resolved."""

    def __init__(self, book: AddressBook) -> None:
        self.book, self.inner = book, httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        address = self.book.pins.get((host.lower().strip("[]"), port))
        if address is None:
            raise httpcore.ConnectError(f"{host}:{port} has no vetted address; the fetcher pins one before connecting")
        return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used by the crawler")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, book: AddressBook, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx's transport takes no network backend, so the pool is rebuilt with ours, as httpx builds it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(book))


def pinned_transport(book: AddressBook, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    return _PinnedTransport(book, limits)
