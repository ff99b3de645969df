"""A fault-injecting website on 127.0.0.1 for crawler tests, with an access log to assert what was requested.

Routes (all under one server): ordinary pages `/page/<n>` that link to each other, `/robots.txt` (configurable),
sitemaps and a feed, and one route per fault: `/flaky` (500 then 200), `/down` (503 forever), `/throttled` (429 with
Retry-After: 1, then 200), `/stall` (headers late), `/drip` (body one byte at a time), `/loop-a` <-> `/loop-b`,
`/to-private` (redirect to a loopback name and to 169.254.169.254), `/huge` (50 MB, chunked), `/bomb` (gzip of
50 MB of zeros), `/binary` (PNG bytes as text/html), `/data.json`, `/mislabelled` (UTF-8 declared ISO-8859-1), `/malformed`.
"""

from __future__ import annotations

import functools
import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SENTENCES = [
    "The river keeps its own calendar, rising with snowmelt in spring and falling back in the long dry summer.",
    "Farmers along the valley read the water level the way sailors read the sky, and plant accordingly.",
    "A stone bridge built three centuries ago still carries the market road across the narrowest bend.",
    "Every autumn the town holds a fair where the first pressed cider is sold beside woollen blankets.",
    "Children learn to swim in the shallow pools below the mill, watched by grandparents on the bank.",
    "When floods come, the church bell rings in a pattern that every household learned long ago.",
]


def article(title: str, n: int, extra: str = "", links: list[str] | None = None, head: str = "") -> str:
    paras = "".join(f"<p>{' '.join(SENTENCES[(n + i + j) % len(SENTENCES)] for j in range(3))} ({title}, {i})</p>"
                    for i in range(4))
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links or [])
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>{head}</head>"
            f"<body><nav><ul>{nav}</ul></nav><main><article><h1>{title}</h1>{paras}{extra}</article></main>"
            "</body></html>")


@functools.cache
def bomb_body() -> bytes:
    """gzip of 50 MB of zeros (about 50 KB); cached, as compressing it takes longer than the tests' read timeout."""
    return gzip.compress(b"\0" * 50_000_000, 6)


@dataclass
class FaultSite:
    n_pages: int = 5
    robots: str | None = None  # robots.txt body; None -> 404
    robots_status: int = 200
    pages: dict[str, str] = field(default_factory=dict)  # extra path -> HTML
    redirects: dict[str, str] = field(default_factory=dict)  # extra path -> Location (302)
    log: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    huge_sent: int = 0
    bind: tuple[str, int] = ("127.0.0.1", 0)  # address and port to listen on (0: any free port)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(self.bind, self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://{self.bind[0]}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, path: str) -> list[float]:
        """Times (monotonic) at which `path` was requested."""
        with self.lock:
            return [t for t, p, _ in self.log if p == path]

    def paths(self) -> list[str]:
        with self.lock:
            return [p for _, p, _ in self.log]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def send(self, status: int, body: bytes = b"", ctype: str = "text/html; charset=utf-8",
                     headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: C901 - one branch per fault, on purpose
                path = self.path
                with site.lock:
                    site.log.append((time.monotonic(), path, dict(self.headers.items())))
                    site.counts[path] = n = site.counts.get(path, 0) + 1
                try:
                    self.route(path, n)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the crawler hung up on purpose (caps, timeouts)

            def route(self, path: str, n: int) -> None:
                if path == "/robots.txt":
                    return self.send(404, b"no robots") if site.robots is None else \
                        self.send(site.robots_status, site.robots.encode(), "text/plain")
                if path in site.redirects:
                    return self.send(302, headers={"Location": site.redirects[path]})
                if path in site.pages:
                    body = site.pages[path].encode()
                    if site.pages[path].startswith("<?xml"):
                        return self.send(200, body, "application/xml")
                    return self.send(200, body)
                if path == "/" or path.startswith("/page/"):
                    # The root links every page (its ETag changes with n_pages); each page links back to the root.
                    i = int(path.rsplit("/", 1)[-1]) if path.startswith("/page/") else 0
                    links = [f"/page/{j}" for j in range(1, site.n_pages + 1)] if i == 0 else ["/"]
                    etag = f'"root-{site.n_pages}"' if i == 0 else f'"p{i}"'
                    if self.headers.get("If-None-Match") == etag:
                        return self.send(304, headers={"ETag": etag})
                    return self.send(200, article(f"Page {i}", i, links=links).encode(), headers={"ETag": etag})
                if path == "/flaky":
                    return self.send(500, b"oops") if n == 1 else self.send(200, article("Flaky", 1).encode())
                if path == "/down":
                    return self.send(503, b"down")
                if path == "/throttled":
                    return self.send(429, b"slow down", headers={"Retry-After": "1"}) if n == 1 else \
                        self.send(200, article("Throttled", 2).encode())
                if path == "/stall":
                    time.sleep(1.5)  # past the tests' read timeout
                    return self.send(200, article("Stall", 3).encode())
                if path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.05)
                    return None
                if path in ("/loop-a", "/loop-b"):
                    return self.send(302, headers={"Location": "/loop-b" if path == "/loop-a" else "/loop-a"})
                if path == "/to-private":
                    return self.send(302, headers={"Location": f"http://localhost:{site.port}/secret"})
                if path == "/to-metadata":
                    return self.send(301, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
                if path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"<p>" + b"a" * 65530 + b"</p>"
                    for _ in range(50_000_000 // len(chunk)):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        site.huge_sent += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                    return None
                if path == "/bomb":
                    return self.send(200, bomb_body(), headers={"Content-Encoding": "gzip"})
                if path == "/data.json":
                    return self.send(200, b'{"not": "html"}' * 1000, "application/json")
                if path == "/binary":
                    return self.send(200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)
                if path == "/mislabelled":
                    body = article("Café naïve", 4, extra="<p>Crème brûlée à la française, déjà vu.</p>")
                    return self.send(200, body.encode("utf-8"), "text/html; charset=iso-8859-1")
                if path == "/malformed":
                    body = ("<html><head><title>Broken</title><body><div><p>" + " ".join(SENTENCES) +
                            "<p><b>unclosed <i>tags " + " ".join(SENTENCES[::-1]) + "</div></span></table>")
                    return self.send(200, body.encode())
                return self.send(404, b"not found")

        return Handler
