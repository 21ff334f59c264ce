from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402


@pytest.fixture(scope="session")
def byte_tok():
    return tiny.byte_level_tokenizer()


@pytest.fixture(scope="session")
def meta_tok():
    return tiny.metaspace_tokenizer()


@pytest.fixture(params=["byte", "meta"])
def any_tok(request, byte_tok, meta_tok):
    return byte_tok if request.param == "byte" else meta_tok


@pytest.fixture
def tiny_model(byte_tok):
    return tiny.tiny_llama(len(byte_tok))
