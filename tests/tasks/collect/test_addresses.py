"""The SSRF guard: which addresses are refused (the IANA special-purpose registries, RFC 6890, and the IPv6 forms
that wrap an IPv4 host), one resolution per name with the connection pinned to it (a resolver that answers
differently the second time, on two real loopback servers), `host:port` allow-list entries, and redirects from a
real server into private ranges.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import test_crawl_faults
from fault_site import FaultSite
from pydantic import ValidationError
from test_crawl_faults import crawl, problems

from tasks.collect.config import CrawlConfig
from tasks.collect.fetch import Fetcher, FetchLimits
from tasks.collect.fetch_guards import blocked_ip

# (address, why it must be refused) — IANA IPv4/IPv6 Special-Purpose Address Registries and the wrapping RFCs.
site = test_crawl_faults.site  # the FaultSite fixture

REFUSED = [
    ("10.1.2.3", "private, RFC 1918"), ("172.16.0.1", "private, RFC 1918"), ("192.168.1.1", "private, RFC 1918"),
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback /8"), ("0.0.0.0", "this host"),
    ("169.254.169.254", "link-local: cloud metadata"), ("100.64.0.1", "shared address space (CGNAT), RFC 6598"),
    ("100.100.100.200", "shared address space: Alibaba Cloud metadata"), ("192.0.0.1", "IETF protocol assignments"),
    ("192.0.2.1", "TEST-NET-1"), ("198.18.0.1", "benchmarking, RFC 2544"), ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "limited broadcast"),
    ("::1", "IPv6 loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fe80::1%eth0", "scoped link-local"),
    ("fc00::1", "unique local, RFC 4193"), ("fd12:3456::1", "unique local"), ("fec0::1", "site-local, RFC 3879"),
    ("ff02::1", "multicast"), ("2001:db8::1", "documentation"), ("100::1", "discard-only, RFC 6666"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"), ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
    ("::127.0.0.1", "IPv4-compatible (deprecated)"),
    ("2002:a9fe:a9fe::1", "6to4 wrapping 169.254.169.254, RFC 3056"), ("2002:7f00:1::", "6to4 wrapping 127.0.0.1"),
    ("2002:0a00:0001::1", "6to4 wrapping 10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo, RFC 4380 (not globally routable)"),
    ("2001:0:a9fe:a9fe::5601:5601", "Teredo with server 169.254.169.254"),
    ("64:ff9b::a9fe:a9fe", "NAT64 wrapping 169.254.169.254, RFC 6052"), ("64:ff9b::7f00:1", "NAT64 wrapping loopback"),
    ("64:ff9b::a00:1", "NAT64 wrapping 10.0.0.1"), ("64:ff9b:1::a00:1", "local-use NAT64, RFC 8215"),
    ("not-an-ip", "not an address"),
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
           "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_address_is_refused(address: str, why: str):
    assert blocked_ip(address), why


@pytest.mark.parametrize("address", ALLOWED)
def test_globally_routable_address_is_allowed(address: str):
    assert not blocked_ip(address)


def test_allow_list_entries_must_name_a_port():
    assert CrawlConfig(allow_private_hosts=["Intranet.test:8080", "[::1]:80"]).allow_private_hosts == \
        ["intranet.test:8080", "[::1]:80"]
    for entry in ["127.0.0.1", "intranet.test", "::1:8080", "host:http", ":80"]:
        with pytest.raises(ValidationError, match="must be host:port"):
            CrawlConfig(allow_private_hosts=[entry])


# --- fetches through the real fetcher and transport ------------------------------------------------------------

def _limits(allow: set[str]) -> FetchLimits:
    return FetchLimits("lmforge-test", 1.0, 1.0, 3.0, 0, 0.01, 0.01, 1.0, 5, 1_000_000, 100.0, frozenset(allow))


def _fetch_all(urls: list[str], allow: set[str], answers: dict[str, list[list[str]]]) -> tuple[list, list[str]]:
    """Fetch `urls` in order with a resolver that gives each name its next answer; (results, names looked up)."""
    looked_up: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        queue = answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def run() -> list:
        fetcher = Fetcher(_limits(allow), resolver=resolver)
        try:
            return [await fetcher.fetch(url) for url in urls]
        finally:
            await fetcher.aclose()

    return asyncio.run(run()), looked_up


@pytest.fixture
def twin_sites() -> Iterator[tuple[FaultSite, FaultSite]]:
    """Two servers on one port: 127.0.0.1 (the answer that was vetted) and 127.0.0.2 (the rebinding target)."""
    first = FaultSite()
    try:
        second = FaultSite(bind=("127.0.0.2", first.port))
    except OSError:
        first.close()
        pytest.skip("127.0.0.2 is not bindable here")
    yield first, second
    first.close()
    second.close()


def test_a_name_is_resolved_once_and_connections_go_to_that_answer(twin_sites: tuple[FaultSite, FaultSite]):
    first, second = twin_sites
    base = f"http://rebind.test:{first.port}"
    first.redirects["/hop"] = "/page/2"
    results, looked_up = _fetch_all([f"{base}/page/1", f"{base}/hop", f"{base}/page/3"], {f"rebind.test:{first.port}"},
                                    {"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    assert [r.outcome for r in results] == ["fetched"] * 3 and looked_up == ["rebind.test"]
    assert first.paths() == ["/page/1", "/hop", "/page/2", "/page/3"] and second.paths() == []
    assert {headers["Host"] for _, _, headers in first.log} == {f"rebind.test:{first.port}"}  # the name, kept


def test_a_name_with_any_private_answer_is_refused_before_connecting(site: FaultSite):
    urls = [f"http://mixed.test:{site.port}/", f"http://private.test:{site.port}/"]
    results, _ = _fetch_all(urls, set(), {"mixed.test": [["8.8.8.8", "127.0.0.1"]],
                                          "private.test": [["127.0.0.1"]]})
    assert [r.outcome for r in results] == ["blocked_address", "blocked_address"] and site.paths() == []


def test_the_transport_never_connects_to_a_name_it_was_not_given(site: FaultSite):
    async def run() -> None:
        fetcher = Fetcher(_limits(set()))
        try:
            with pytest.raises(httpx.ConnectError, match="no vetted address"):
                await fetcher.client.get(f"{site.base}/")  # past the guard: the transport itself refuses
        finally:
            await fetcher.aclose()

    asyncio.run(run())
    assert site.paths() == []


def test_redirects_into_private_ranges_are_refused(site: FaultSite, tmp_path: Path):
    other = FaultSite()  # same host, another port: allow-listing 127.0.0.1:<site> must not open it
    targets = {"/to-other-port": f"http://127.0.0.1:{other.port}/", "/to-mapped": f"http://[::ffff:7f00:1]:{site.port}/",
               "/to-cgnat": "http://100.64.0.1/", "/to-6to4": "http://[2002:a9fe:a9fe::1]/",
               "/to-nat64": "http://[64:ff9b::a9fe:a9fe]/", "/to-site-local": "http://[fec0::1]/",
               "/to-decimal": f"http://2130706433:{site.port}/"}  # 127.0.0.1 spelled as one number
    site.redirects.update(targets)
    try:
        stats, _, out = crawl(tmp_path, [f"{site.base}{path}" for path in targets])
    finally:
        other.close()
    assert {name: problems(out)[name] for name in (p.strip("/") for p in targets)} == \
        {p.strip("/"): ("blocked_address", "") for p in targets}
    assert other.paths() == [] and set(site.paths()) == {"/robots.txt", *targets}


def test_a_hostname_that_resolves_to_loopback_is_refused_even_on_an_allowed_port(site: FaultSite, tmp_path: Path):
    with socket.socket() as probe:
        probe.settimeout(0.5)
        probe.connect(("127.0.0.1", site.port))  # the server is there
    stats, _, out = crawl(tmp_path, [f"http://localhost:{site.port}/"], allow_private_hosts=[f"127.0.0.1:{site.port}"])
    assert problems(out)[""] == ("blocked_address", "") and site.paths() == []


def test_tls_sends_the_original_name_as_sni_to_the_pinned_address():
    """A TCP listener on 127.0.0.1 records the TLS ClientHello, where SNI travels in clear text."""
    hello: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(2)
                hello.append(conn.recv(16384))

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        [result], looked_up = _fetch_all([f"https://pinned.test:{port}/"], {f"pinned.test:{port}"},
                                         {"pinned.test": [["127.0.0.1"]]})
        thread.join(timeout=5)
    assert result.outcome == "error" and looked_up == ["pinned.test"]  # no TLS server answered: the handshake fails
    assert hello and hello[0][:1] == b"\x16" and b"pinned.test" in hello[0]  # a handshake record naming the host
