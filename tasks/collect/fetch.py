"""One URL fetched safely: retries, redirects, body and decompression caps, and the address guard.

`Fetcher.fetch` turns a URL into a `FetchResult` whose `outcome` says exactly what happened (fetched, not_modified,
too_large, non_html, decompression_bomb, blocked_address, robots_denied or error with an `error_kind`). It never
raises for network trouble; every HTTP exchange it completes is handed to `on_exchange` so the crawler can archive
it as WARC. Bodies are streamed raw and decompressed here, so the size cap and the bomb guard see every byte. Every hop
(redirects included) is resolved once and vetted by `tasks.collect.addresses`, and the connection goes to the
vetted address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from tasks.collect.addresses import AddressBook, Resolver, pinned_transport, system_resolver
from tasks.collect.fetch_guards import (
    BodyDecoder,
    FetchFailure,
    archived_headers,
    content_length,
    peer_ip,
    retry_after,
)

REDIRECTS = {301, 302, 303, 307, 308}
RETRY_STATUSES = {429, 500, 502, 503, 504}
FETCHED_TYPES = ("text/html", "application/xhtml+xml")
DISCOVERY_TYPES = ("application/xml", "text/xml", "application/rss+xml", "application/atom+xml")


@dataclass(frozen=True)
class FetchLimits:
    """The robustness knobs of `CrawlConfig`, flattened for the fetcher."""

    user_agent: str
    connect_timeout_s: float
    read_timeout_s: float
    total_timeout_s: float
    max_retries: int
    backoff_base_s: float
    backoff_max_s: float
    max_retry_after_s: float
    max_redirects: int
    max_body_bytes: int
    max_compression_ratio: float
    allow_private_hosts: frozenset[str] = frozenset()  # `host:port` entries that may resolve to any address


@dataclass
class Exchange:
    """One HTTP request/response pair as it goes into the WARC (body already decoded, maybe truncated)."""

    url: str
    request_headers: list[tuple[str, str]]
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    truncated: bool
    ip: str
    fetch_time: str  # ISO 8601 UTC, when the request started: the record's WARC-Date


@dataclass
class FetchResult:
    url: str
    outcome: str
    error_kind: str = ""
    final_url: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    attempts: int = 0
    redirects: list[str] = field(default_factory=list)
    fetch_time: str = ""
    warc: tuple[str, str] = ("", "")  # (file, record id) of the final response, set by the crawler's on_exchange


class Gatekeeper(Protocol):
    async def allowed(self, url: str) -> str: ...  # "" when allowed, else an outcome or error kind

    def slot(self, host: str) -> Any: ...  # async context manager: per-host concurrency and delay

    def penalize(self, host: str, seconds: float) -> None: ...


class Fetcher:
    def __init__(self, limits: FetchLimits, gate: Gatekeeper | None = None,
                 on_exchange: Callable[[Exchange], tuple[str, str]] | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self.limits, self.gate, self.on_exchange = limits, gate, on_exchange
        self.addresses = AddressBook(resolver, limits.allow_private_hosts)
        timeout = httpx.Timeout(limits.read_timeout_s, connect=limits.connect_timeout_s)
        transport = pinned_transport(self.addresses, httpx.Limits(max_connections=256, max_keepalive_connections=64))
        # trust_env=False: a proxy from the environment would connect to addresses the guard never saw.
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False, transport=transport,
                                        headers={"User-Agent": limits.user_agent, "Accept-Encoding": "gzip, deflate",
                                                 "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9"})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, url: str, headers: dict[str, str] | None = None, *, robots: bool = True,
                    accept: tuple[str, ...] = FETCHED_TYPES + DISCOVERY_TYPES, prefix_bytes: int = 0) -> FetchResult:
        """Fetch `url`, following redirects with every hop re-checked (scheme, address, robots). `prefix_bytes`:
        a longer body is cut there and still counts as fetched (robots.txt is read up to 500 KiB, RFC 9309)."""
        chain, current, attempts = [url], url, 0
        while True:
            result = await self._fetch_hop(current, headers if current == url else None, robots, accept,
                                           prefix_bytes)
            attempts += result.attempts
            location = result.headers.get("location", "") if result.status in REDIRECTS else ""
            if not location or result.outcome != "fetched":
                break
            target = urljoin(current, location.strip()).split("#")[0]
            if target in chain:
                result = FetchResult(url, "error", "redirect_loop", status=result.status)
                break
            if len(chain) > self.limits.max_redirects:
                result = FetchResult(url, "error", "too_many_redirects", status=result.status)
                break
            chain.append(target)
            current = target
        if result.outcome == "fetched" and result.status >= 300:
            result.outcome, result.error_kind = "error", f"http_{result.status}"  # incl. 5xx after the last retry
        result.url, result.attempts, result.redirects = url, attempts, chain[1:]
        result.final_url = result.final_url or current
        return result

    async def _fetch_hop(self, url: str, headers: dict[str, str] | None, robots: bool,
                         accept: tuple[str, ...], prefix_bytes: int) -> FetchResult:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return FetchResult(url, "error", "bad_scheme", attempts=0)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return FetchResult(url, "error", "bad_url", attempts=0)
        refused = await self.addresses.pin(parts.hostname, port)
        if refused:
            return FetchResult(url, *refused)
        if robots and self.gate is not None:
            denied = await self.gate.allowed(url)
            if denied:
                return FetchResult(url, "robots_denied" if denied == "robots_denied" else "error",
                                   "" if denied == "robots_denied" else denied)
        attempt = 0
        while True:
            attempt += 1
            result, retry_after = await self._attempt(url, headers or {}, accept, prefix_bytes)
            result.attempts = attempt
            retryable = (result.status in RETRY_STATUSES or
                         (result.outcome == "error" and result.error_kind in _RETRY_ERRORS))
            if not retryable or attempt > self.limits.max_retries:
                return result
            backoff = min(self.limits.backoff_max_s, self.limits.backoff_base_s * 2 ** (attempt - 1))
            delay = backoff * (0.5 + random.random() / 2)  # jitter keeps retries from many workers apart
            if retry_after is not None:
                if retry_after > self.limits.max_retry_after_s:
                    result.outcome, result.error_kind = "error", "retry_after_too_long"
                    return result
                delay = max(delay, retry_after)
                if self.gate is not None:
                    self.gate.penalize(parts.hostname, retry_after)  # the whole host asked us to back off
            await asyncio.sleep(delay)

    async def _attempt(self, url: str, headers: dict[str, str], accept: tuple[str, ...],
                       prefix_bytes: int) -> tuple[FetchResult, float | None]:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        host = urlsplit(url).hostname or ""
        slot = self.gate.slot(host) if self.gate is not None else _nullslot()
        try:
            async with slot:
                async with asyncio.timeout(self.limits.total_timeout_s):
                    return await self._stream(url, headers, accept, started, prefix_bytes)
        except FetchFailure as failure:
            return FetchResult(url, failure.outcome, failure.kind, fetch_time=started), None
        except TimeoutError:
            return FetchResult(url, "error", "total_timeout", fetch_time=started), None
        except httpx.HTTPError as exc:
            return FetchResult(url, "error", _ERROR_KINDS.get(type(exc), type(exc).__name__.lower()),
                               fetch_time=started), None

    async def _stream(self, url: str, headers: dict[str, str], accept: tuple[str, ...], started: str,
                      prefix_bytes: int) -> tuple[FetchResult, float | None]:
        limits = dataclasses.replace(self.limits, max_body_bytes=prefix_bytes) if prefix_bytes else self.limits
        async with self.client.stream("GET", url, headers=headers) as resp:
            ip = peer_ip(resp)  # the pinned address: recorded in the WARC
            ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            outcome, body, truncated = "fetched", b"", False
            if resp.status_code == 200 and ctype and not ctype.startswith(accept):
                outcome = "non_html"  # recorded, never downloaded
            elif not prefix_bytes and content_length(resp.headers.get("content-length")) > limits.max_body_bytes:
                outcome, truncated = "too_large", True
            elif resp.status_code not in REDIRECTS and resp.status_code != 304:
                body, truncated, outcome = await self._read_body(resp, limits)
                if prefix_bytes and outcome == "too_large":
                    outcome = "fetched"  # the caller asked for a prefix
            exchange = Exchange(url, list(resp.request.headers.items()), resp.status_code, resp.reason_phrase,
                                archived_headers(resp.headers.multi_items(), len(body)), body, truncated, ip, started)
            warc = self.on_exchange(exchange) if self.on_exchange and outcome != "non_html" else ("", "")
            if resp.status_code == 304:
                outcome = "not_modified"
            result = FetchResult(url, outcome, status=resp.status_code, headers=dict(resp.headers.items()),
                                 body=body if outcome == "fetched" else b"", fetch_time=started, warc=warc)
            return result, retry_after(resp.headers.get("retry-after"))

    async def _read_body(self, resp: httpx.Response, limits: FetchLimits) -> tuple[bytes, bool, str]:
        decoder = BodyDecoder(resp.headers.get("content-encoding", ""), limits)
        raw = 0
        async for chunk in resp.aiter_raw():
            raw += len(chunk)
            if raw > limits.max_body_bytes:
                return decoder.output(), True, "too_large"  # stop reading: the rest never leaves the socket
            if decoder.feed(chunk):
                return decoder.output(), True, "too_large"
        decoder.finish()
        return decoder.output(), False, "fetched"


_RETRY_ERRORS = {"connect_error", "connect_timeout", "read_timeout", "read_error", "protocol_error", "pool_timeout"}
_ERROR_KINDS: dict[type, str] = {
    httpx.ConnectError: "connect_error", httpx.ConnectTimeout: "connect_timeout", httpx.ReadTimeout: "read_timeout",
    httpx.WriteTimeout: "write_timeout", httpx.PoolTimeout: "pool_timeout", httpx.ReadError: "read_error",
    httpx.RemoteProtocolError: "protocol_error", httpx.LocalProtocolError: "protocol_error",
    httpx.UnsupportedProtocol: "bad_scheme", httpx.InvalidURL: "bad_url",
}


class _nullslot:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


