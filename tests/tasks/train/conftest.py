"""The train tests' shared token set: tokenized once per test module by the real tokenize stage."""

from __future__ import annotations

import pytest
from token_fixtures import make_token_set


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return make_token_set(tmp_path_factory.mktemp("data"), n_docs=120, vocab_size=400)
