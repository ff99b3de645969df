"""The train tests' shared token set: tokenized once per test session by the real tokenize stage (tests only read
it)."""

from __future__ import annotations

import pytest
from token_fixtures import make_token_set


@pytest.fixture(scope="session")
def tokens(tmp_path_factory):
    return make_token_set(tmp_path_factory.mktemp("data"), n_docs=120, vocab_size=400)
