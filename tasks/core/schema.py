"""The Parquet schemas lmforge writes: documents out of the crawl, curated shards out of curation.

These are the documented, stable formats other tools can read (README, "Data formats"). Bump `tasks.core.artifacts.
SCHEMA_VERSION` when a column changes meaning.
"""

from __future__ import annotations

import pyarrow as pa

# One row per extracted page (crawl or WARC ingest).
DOC_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # sha1 of the normalised URL
        pa.field("text", pa.string(), nullable=False),  # main text extracted by trafilatura
        pa.field("url", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("author", pa.string()),
        pa.field("date", pa.string()),  # publication date found in the page (ISO 8601), if any
        pa.field("fetch_time", pa.string(), nullable=False),  # ISO 8601 UTC
        pa.field("http_status", pa.int32(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),  # sha256 of the raw HTTP body
        pa.field("language_hint", pa.string()),  # <html lang> or Content-Language, unverified
        pa.field("warc_file", pa.string()),  # WARC file holding the raw response
        pa.field("warc_record_id", pa.string()),  # a local dataset's document: `<file>#<row id>`
        pa.field("source", pa.string()),  # "crawl" or a local dataset's name (tasks.collect.mixture); null = crawl
    ]
)

# One row per curated document, in shard_00000.parquet ...
SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),  # PII replaced by placeholders
        pa.field("url", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("crawl_date", pa.string(), nullable=False),  # fetch time, ISO 8601 UTC
        pa.field("language", pa.string(), nullable=False),  # fasttext lid.176 label, e.g. "en"
        pa.field("language_score", pa.float32(), nullable=False),
        pa.field("quality_score", pa.float32()),  # fasttext quality classifier probability, null when not run
        pa.field("minhash_cluster_size", pa.int32(), nullable=False),  # near-duplicates removed for this doc + 1
        pa.field("token_count", pa.int32(), nullable=False),  # whitespace words (tokenizer-independent)
        pa.field("source_warc", pa.string()),
        pa.field("source_record_id", pa.string()),  # a local dataset's document: `<file>#<row id>`
        pa.field("source", pa.string(), nullable=False),  # "crawl" or the local dataset's name (mixture provenance)
    ]
)
