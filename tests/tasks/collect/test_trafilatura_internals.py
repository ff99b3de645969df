"""trafilatura's private names that collection calls: each exists, with the parameters we pass, at the pinned version.

`tasks.collect.extract_text` rebuilds trafilatura's extraction sequence from its stages, using a few underscore
names that may change in any release. pyproject.toml pins trafilatura exactly; this test makes an upgrade fail here,
naming what moved, instead of changing extraction quietly.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
USERS = [ROOT / "tasks" / "collect" / "extract_text.py", ROOT / "tasks" / "collect" / "xpath_gates.py"]

# private name -> the parameter names of the call we make (None: not called, used as a compiled regex)
PRIVATE = {
    ("trafilatura.core", "_recall_retry"): ["esc_tree", "r_options", "url"],  # _recall_retry(tree, recall, url)
    ("trafilatura.core", "_DISCUSSION_FORUM_POSTING_RE"): None,  # .search(script.text)
    ("trafilatura.baseline", "_spaced_text"): ["element"],  # _spaced_text(body)
}


def private_imports() -> set[tuple[str, str]]:
    """(module, name) of every underscore name our collect modules import from trafilatura."""
    used = set()
    for path in USERS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "trafilatura":
                used |= {(node.module, alias.name) for alias in node.names if alias.name.startswith("_")}
    return used


def test_every_private_name_we_import_is_listed_here():
    assert private_imports() == set(PRIVATE), "a private trafilatura name was added or dropped: update PRIVATE"


@pytest.mark.parametrize("module, name", sorted(PRIVATE))
def test_private_name_exists_with_the_signature_we_call(module, name):
    # import_module, not attribute access: `trafilatura.baseline` is also a function that shadows the module
    found = getattr(importlib.import_module(module), name, None)
    assert found is not None, f"{module}.{name} is gone: adapt tasks/collect/extract_text.py to this trafilatura"
    if PRIVATE[module, name] is None:
        assert isinstance(found, re.Pattern), f"{module}.{name} is no longer a compiled regex"
    else:
        assert list(inspect.signature(found).parameters) == PRIVATE[module, name], (
            f"{module}.{name}{inspect.signature(found)} changed: adapt tasks/collect/extract_text.py")


def test_installed_trafilatura_is_the_pinned_one():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in dependencies if d.startswith("trafilatura"))
    assert pin == f"trafilatura=={importlib.metadata.version('trafilatura')}", (
        f"pyproject pins {pin!r}: the private names above were checked against the installed version only")


def test_the_private_calls_return_what_we_unpack():
    from trafilatura.baseline import _spaced_text
    from trafilatura.core import _recall_retry

    from tasks.collect.extract_text import _options, parse_html

    tree = parse_html("<html><body><div><p>" + "Debian is a free operating system. " * 20 + "</p></div></body></html>")
    options = _options(fast=True, url="http://site.test/")
    body, text = _recall_retry(tree, options, "http://site.test/")
    assert "Debian" in text and body is not None
    assert _spaced_text(parse_html("<html><body><p>a</p><p>b</p></body></html>")) == "a b"


@pytest.mark.parametrize("error, kept", [(ValueError("lxml rejects this text"), True), (RuntimeError("a bug"), False)])
def test_a_failing_recall_retry_keeps_the_text_and_a_bug_raises(monkeypatch, error, kept):
    from lxml.html import fromstring

    from tasks.collect.extract_text import _options, _rescue, parse_html
    from tasks.collect.xpath_gates import ClassIdValues

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module("trafilatura.core"), "_recall_retry", fail)
    page = "".join(f"<div><p>Paragraph {i}: Debian is a free operating system.</p></div>" for i in range(300))
    tree = parse_html(f"<html><body>{page}</body></html>")
    found, options = "Debian is a free operating system. " * 10, _options(fast=True, url="http://site.test/")
    assert options.min_extracted_size <= len(found)  # long enough to skip the baseline, short enough to escalate
    body = fromstring(f"<body><p>{found}</p></body>")
    if kept:
        assert _rescue(tree, ClassIdValues(tree), body, found, options, "http://site.test/") == (body, found)
    else:
        with pytest.raises(RuntimeError, match="a bug"):
            _rescue(tree, ClassIdValues(tree), body, found, options, "http://site.test/")
