"""Collect: crawl the web politely (or ingest WARC files) and extract main text with trafilatura.

Entry point (`crawl.py`): `run_crawl(cfg, out) -> DocSet`, the plain function, and the Prefect task `crawl(cfg)`.
Config: `config.CrawlConfig`. Output: WARC files, `docs/docs_*.parquet` (`tasks.core.schema.DOC_SCHEMA`), a report.
Second entry point (`mixture.py`): `run_mix(cfg, docs, out) -> DocSet` and the task `mix(cfg, docs)`, local datasets
(Parquet/JSONL) mixed into the crawl's documents at weights; config `mixture.MixtureConfig`.

Internal modules (other stages and flows do not import them): `crawler` (frontier and scheduling), `fetch` (HTTP
with retries and caps), `fetch_guards` (address and size guards), `politeness` (robots.txt, per-host delays),
`discover` (links, sitemaps, feeds, scope), `extract` (decoding, links, robots meta), `extract_text` (trafilatura's
stages), `xpath_gates` (skipping its walks that cannot match a page), `state` (SQLite crawl state), `output` (WARC
and Parquet batches), `local_site` (the demo's loopback site), `warc` (WARC ingest).
"""
