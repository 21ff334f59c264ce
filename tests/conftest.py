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


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A saved tiny Llama + byte-level tokenizer (read-only: runs write to their own dirs)."""
    return tiny.save_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def table_data(tmp_path_factory) -> Path:
    """``inter.csv`` + ``items.csv``: 30 users with 9 of the 16 ``tiny.MOVIES_16`` each."""
    return tiny.write_table(tmp_path_factory.mktemp("data"), tiny.MOVIES_16, users=30, per_user=9)


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
