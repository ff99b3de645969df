"""Serve local directories as a website on loopback for the duration of a crawl (the demo corpus).

`serve_local_site` maps each URL prefix of `LocalSiteConfig.roots` to a directory (`/python/…` ->
`/usr/share/doc/python3.11/html/…`) and serves a generated index page at `/` linking every prefix, so the crawler
needs one seed. It is Python's threaded `http.server`, which sends Last-Modified and answers If-Modified-Since
with 304, so incremental recrawls of the demo site exercise conditional requests. It has no robots.txt (404).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class LocalSiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roots: dict[str, str] = Field(default_factory=dict,
                                  description="URL path prefix -> local directory served under it.")
    host: str = Field(default="127.0.0.1", description="Address to bind; loopback keeps the site private.")
    port: int = Field(default=8731, description="Port to bind (0 = any free port). Fixed by default so URLs, "
                                                "and so the incremental crawl state, stay the same across runs.")


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the crawler reuses connections

    def __init__(self, *args: object, roots: dict[str, Path], **kwargs: object) -> None:
        self.roots = roots
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def translate_path(self, path: str) -> str:
        prefix, _, rest = path.lstrip("/").partition("/")
        root = self.roots.get(prefix)
        if root is None:
            return str(Path("/nonexistent-lmforge-local-site"))  # -> 404
        self.directory = str(root)
        return super().translate_path("/" + rest)  # strips "..", so requests stay inside the root

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/":
            links = "".join(f'<li><a href="/{html.escape(p)}/">{html.escape(p)}</a></li>' for p in self.roots)
            # noindex: the crawler follows its links but does not take this generated page as a document.
            body = ("<!doctype html><html><head><title>lmforge local site</title>"
                    f'<meta name="robots" content="noindex"></head><body><ul>{links}</ul>')
            data = (body + "</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: the crawl keeps its own log
        return None


@contextmanager
def serve_local_site(cfg: LocalSiteConfig) -> Iterator[str]:
    """Serve `cfg.roots` on `cfg.host:cfg.port` until the block exits; yields the root URL `http://host:port/`."""
    roots: dict[str, Path] = {}
    for prefix, directory in cfg.roots.items():
        if "/" in prefix.strip("/") or not prefix.strip("/"):
            raise ValueError(f"local_site.roots: prefix {prefix!r} must be one path segment like 'python'")
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"crawl.local_site.roots[{prefix!r}]: {directory} is not a directory. The demo "
                                    "corpus comes from Debian packages: `make corpus` installs them (needs apt-get and "
                                    "root or sudo); without apt, crawl your own HTML instead: --set "
                                    "'crawl.local_site.roots={site: /path/to/html}' (README, Crawl)")
        roots[prefix.strip("/")] = Path(directory).resolve()
    try:
        server = ThreadingHTTPServer((cfg.host, cfg.port), partial(_Handler, roots=roots))
    except OSError as exc:
        raise OSError(f"local_site: cannot bind {cfg.host}:{cfg.port} ({exc}); another crawl or program holds "
                      "the port: stop it or set crawl.local_site.port") from exc
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="lmforge-local-site", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
