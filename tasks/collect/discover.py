"""Where the crawl may go: URL normalisation (courlan), the scope rules, and links found in sitemaps and feeds.

`normalize` is the frontier's identity: two spellings of one page map to one string, so a page is queued once.
`Scope` applies the user's rules (same domain by default, allow/deny hosts, allow/deny URL patterns).
`xml_links` reads sitemaps, sitemap indexes, RSS and Atom with a parser that resolves no entities and fetches
nothing, so a hostile feed cannot read local files or explode in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

from courlan import extract_domain, normalize_url
from courlan.filters import extension_filter, is_not_crawlable

XML_TAGS = ("<urlset", "<sitemapindex", "<rss", "<feed", "<rdf:rdf")
XML_TYPES = ("application/xml", "text/xml", "application/rss+xml", "application/atom+xml")


def normalize(url: str, base: str | None = None) -> str | None:
    """Absolute, fragment-free, normalised http(s) URL, or None for other schemes and unparsable links."""
    url = url.strip()
    if not url or url.startswith(("javascript:", "mailto:", "tel:", "data:")):
        return None
    try:
        absolute = urljoin(base, url) if base else url
        absolute = urldefrag(absolute)[0]
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        return normalize_url(absolute)
    except ValueError:  # malformed netloc or port
        return None


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _domain(host: str) -> str:
    # courlan knows public suffixes (docs.python.org -> python.org); IPs and bare names stay as they are.
    return (extract_domain(f"http://{host}/") or host).lower()


@dataclass
class Scope:
    seeds: list[str]
    same_domain: bool = True
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] = ()
    deny_patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.domains = {_domain(host_of(seed)) for seed in self.seeds if host_of(seed)}
        self._allow = [re.compile(p) for p in self.allow_patterns]
        self._deny = [re.compile(p) for p in self.deny_patterns]

    def add_seed(self, url: str) -> None:
        self.domains.add(_domain(host_of(url)))

    def reason_out(self, url: str) -> str:
        """"" when `url` is in scope, else why not (a stats key)."""
        host = host_of(url)
        if _host_matches(host, self.deny_hosts):
            return "denied_host"
        if self.same_domain and _domain(host) not in self.domains and not _host_matches(host, self.allow_hosts):
            return "off_domain"
        if self._deny and any(p.search(url) for p in self._deny):
            return "denied_pattern"
        if self._allow and not any(p.search(url) for p in self._allow):
            return "not_allowed_pattern"
        path = urlsplit(url).path
        if not extension_filter(path.lower()):
            return "file_extension"  # images, PDFs, archives: not text we extract
        if is_not_crawlable(url):
            return "not_crawlable"  # login, contact and imprint pages
        return ""


def _host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    return any(host == p.lower() or host.endswith("." + p.lower()) for p in patterns)


def looks_like_xml_links(content_type: str, body: bytes) -> bool:
    """Sitemap or feed (by type or by its root tag), as opposed to a page; XHTML is a page."""
    if content_type.split(";")[0].strip() in XML_TYPES:
        return True
    head = body[:2048].lstrip().lower()
    return not content_type.startswith(("text/html", "application/xhtml")) and any(t.encode() in head for t in XML_TAGS)


def xml_links(body: bytes, base: str) -> tuple[list[str], list[str], bool]:
    """(page URLs, sitemap URLs, is a sitemap) listed by a sitemap, sitemap index, RSS or Atom document."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return [], [], False
    if root is None:
        return [], [], False
    pages: list[str] = []
    sitemaps: list[str] = []
    kind = etree.QName(root).localname.lower()
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el).localname.lower()
        if name == "loc" and el.text:
            (sitemaps if kind == "sitemapindex" else pages).append(el.text.strip())
        elif name == "link" and kind in ("rss", "rdf") and el.text and el.text.strip():
            pages.append(el.text.strip())
        elif name == "link" and kind == "feed" and el.get("href") and el.get("rel", "alternate") == "alternate":
            pages.append(el.get("href", ""))
    norm = lambda items: [u for u in (normalize(i, base) for i in items) if u]  # noqa: E731
    return norm(pages), norm(sitemaps), kind in ("urlset", "sitemapindex")
