from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny


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


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny-model tests run on one thread (OpenMP spin-waits dominate on tiny tensors);
    integration tests on the real model use every core."""
    import os

    import torch

    before = torch.get_num_threads()
    wanted = (os.cpu_count() or 1) if request.node.get_closest_marker("integration") else 1
    torch.set_num_threads(wanted)
    yield
    torch.set_num_threads(before)
