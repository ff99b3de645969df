"""The collect stage's config: `CrawlConfig` (scope, politeness, robustness, state) for crawling and WARC ingest."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.collect.local_site import LocalSiteConfig

USER_AGENT = "lmforge/0.1 (+https://github.com/lmforge/lmforge)"


class CrawlConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seeds: list[str] = Field(default_factory=list, description="Start URLs: pages, sitemaps or RSS/Atom feeds.")
    local_site: LocalSiteConfig | None = Field(default=None, description="Serve local directories on loopback "
                                               "during the crawl and crawl them (the demo corpus).")
    warc_paths: list[str] = Field(default_factory=list, description="Globs of WARC/WARC.gz files (e.g. Common "
                                  "Crawl) to extract as well; with no seeds and no local site, only ingest.")
    # scope
    same_domain: bool = Field(default=True, description="Follow links only within the seeds' registered domains.")
    allow_hosts: list[str] = Field(default_factory=list, description="Extra hosts (and subdomains) in scope.")
    deny_hosts: list[str] = Field(default_factory=list, description="Hosts (and subdomains) never crawled.")
    allow_patterns: list[str] = Field(default_factory=list, description="Regexes; if any, a link must match one.")
    deny_patterns: list[str] = Field(default_factory=list, description="Regexes; a matching link is skipped.")
    max_depth: int = Field(default=10, ge=0, description="Link hops from a seed.")
    max_pages: int = Field(default=2000, ge=1, description="URLs fetched at most (pages, sitemaps, feeds).")
    max_pages_per_host: int = Field(default=2000, ge=1, description="URLs fetched at most per host.")
    use_sitemaps: bool = Field(default=True, description="Queue the sitemaps robots.txt lists.")
    # politeness
    user_agent: str = Field(default=USER_AGENT, description="User-Agent; its first token is matched in robots.txt.")
    concurrency: int = Field(default=16, ge=1, description="Requests in flight over all hosts.")
    per_host_concurrency: int = Field(default=2, ge=1, description="Requests in flight per host.")
    min_delay_s: float = Field(default=1.0, ge=0, description="Seconds between request starts per host; robots.txt "
                               "Crawl-delay raises it. Hosts in allow_private_hosts (your own) get 0 unless "
                               "their robots.txt asks for more.")
    max_crawl_delay_s: float = Field(default=60.0, ge=0, description="Cap on a robots.txt Crawl-delay (or "
                                     "Request-rate interval): a site asking for more is crawled at this pace.")
    # robustness
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP/TLS connect timeout.")
    read_timeout_s: float = Field(default=20.0, gt=0, description="Longest wait for the next bytes.")
    total_timeout_s: float = Field(default=60.0, gt=0, description="Longest time for one request, body included.")
    max_retries: int = Field(default=3, ge=0, description="Retries on 429, 5xx and connection errors.")
    backoff_base_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles each retry, jittered.")
    backoff_max_s: float = Field(default=60.0, ge=0, description="Cap on one retry delay.")
    max_retry_after_s: float = Field(default=300.0, ge=0, description="A longer Retry-After gives up on the URL.")
    max_redirects: int = Field(default=5, ge=0, description="Redirect hops followed per URL.")
    max_body_bytes: int = Field(default=5_000_000, ge=1024, description="Body cap (raw and decoded); a larger "
                                "body is cut there and recorded too_large.")
    max_compression_ratio: float = Field(default=100.0, gt=1, description="Decoded/raw size above which a "
                                         "compressed body is refused as a decompression bomb.")
    allow_private_hosts: list[str] = Field(default_factory=list, description="`host:port` entries (e.g. "
                                           "`intranet.example:8080`, `[::1]:8000`) allowed to resolve to addresses "
                                           "that are not globally routable (refused otherwise). The local site's "
                                           "host:port is added automatically.")

    @field_validator("allow_private_hosts")
    @classmethod
    def _host_and_port(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or (":" in host and not host.startswith("[")):
                raise ValueError(f"allow_private_hosts entry {entry!r} must be host:port (like '127.0.0.1:8080' "
                                 "or '[::1]:8080'); a bare host would open every port on it, its other services too")
        return [e.lower() for e in entries]
    # execution and state
    extract_workers: int = Field(default=2, ge=0, description="Processes running trafilatura (0 = in a thread). "
                                 "Processes are spawned: a script calling run_crawl needs `if __name__ == '__main__'`.")
    extract_fallback: bool = Field(default=False, description="Run trafilatura's readability/jusText comparison "
                                   "on every page (by default only where the fast result is short or has no "
                                   "paragraph text): about 1.4x the extraction time.")
    flush_every: int = Field(default=200, ge=1, description="Finished URLs per WARC/Parquet batch; a killed "
                             "crawl resumes after the last batch.")
    incremental: bool = Field(default=False, description="Send conditional requests (ETag/Last-Modified) and emit "
                              "only new or changed documents.")
    state_path: str | None = Field(default=None, description="SQLite crawl state; default "
                                   "$LMFORGE_HOME/crawl-state.sqlite.")
    snapshot: str = Field(default="", description="Label that makes a new stage dir (the retraining flow sets a "
                          "timestamp, so each scheduled crawl runs again).")
