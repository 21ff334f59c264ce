"""SID-LLM runs end to end through the CLI on the tiny checkpoint and the 16-movie table."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from recbias.cli import main
from test_cli import write_config

SID = """
[items]
representation = "{representation}"
[items.sid]
encoder = "tfidf"
levels = 2
codebook_size = 4
"""


def sid_config(tmp_path, ckpt, data, representation="sid", extra=""):
    return write_config(tmp_path, ckpt, data, SID.format(representation=representation) + extra)


def saved_sizes(run) -> list[int]:
    return json.loads((run / "semantic_ids.json").read_text())["sizes"]


def test_sid_run_saves_its_codes_and_recommend_reloads_it(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = sid_config(tmp_path, tiny_ckpt, table_data)
    run = tmp_path / "sid"
    assert main(["run", str(cfg), "--run-dir", str(run)]) == 0
    saved = json.loads((run / "semantic_ids.json").read_text())
    assert len(saved["codes"]) == 16 and saved["sizes"][:2] == [4, 4]
    assert (run / "model" / "semantic_ids.json").read_text() == (
        run / "semantic_ids.json"
    ).read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["semantic_ids"]["n_items"] == 16 and len(metrics["semantic_ids"]["levels"]) == 2
    assert "Semantic IDs (tfidf): 2 levels x 4 codes" in (run / "summary.md").read_text()
    rows = [json.loads(line) for line in (run / "predictions" / "llm.jsonl").open()]
    assert all(not r["target_title"].startswith("<a_") for r in rows)  # titles, not SIDs
    assert all(len(set(r["items"])) == len(r["items"]) == 5 for r in rows)
    before = (run / "predictions" / "llm.jsonl").read_text()
    assert main(["recommend", str(cfg), "--run-dir", str(run)]) == 0
    assert (run / "predictions" / "llm.jsonl").read_text() == before


def test_lora_sid_title_run_with_igd_reloads_the_adapter(tmp_path, tiny_ckpt, table_data):
    extra = '[train.objective]\nname = "igd"\n'
    cfg = sid_config(tmp_path, tiny_ckpt, table_data, "sid+title", extra)
    run = tmp_path / "lora"
    lora = ["--set", "model.finetune=lora", "--set", 'model.lora.target_modules=["q_proj"]']
    assert main(["run", str(cfg), "--run-dir", str(run), *lora]) == 0
    assert (run / "adapter" / "semantic_ids.json").is_file() and not (run / "model").exists()
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    rows = [v for k, v in saved.items() if "trainable_tokens" in k]  # only the SID rows
    assert [r.shape[0] for r in rows] == [4 + 4 + saved_sizes(run)[-1]]
    assert not any(k.endswith("embed_tokens.weight") for k in saved)
    training = json.loads((run / "metrics.json").read_text())["training"]
    assert 0 < training["zero_ig_token_share"] < 1
    before = (run / "predictions" / "llm.jsonl").read_text()
    assert main(["recommend", str(cfg), "--run-dir", str(run), *lora]) == 0
    assert (run / "predictions" / "llm.jsonl").read_text() == before


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("items.representation=sids", "items.representation"),
        ("items.sid.codebook_size=1", "items.sid.codebook_size"),
        ("items.sid.levels=0", "items.sid.levels"),
        ("items.sid.init=zeros", "items.sid.init"),
        ("items.sid.embeddings_path=emb.txt", "items.sid.embeddings_path"),
    ],
)
def test_bad_sid_settings_name_their_key(tmp_path, tiny_ckpt, table_data, capsys, override, key):
    cfg = sid_config(tmp_path, tiny_ckpt, table_data)
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "r"), "--set", override]) == 2
    assert key in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["items.sid.codebook_size=3", "items.sid.levels=2"], "items.sid.codebook_size"),
        (["items.sid.max_suffix=0"], "items.sid.max_suffix"),
    ],
)
def test_codes_that_cannot_index_the_catalog_name_their_key(
    tmp_path, tiny_ckpt, table_data, capsys, overrides, key
):
    cfg = sid_config(tmp_path, tiny_ckpt, table_data)
    sets = [a for o in overrides for a in ("--set", o)]
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "r"), *sets]) == 2
    assert key in capsys.readouterr().err


def test_audit_runs_on_a_sid_run(tmp_path, tiny_ckpt):
    """Every audit analysis (attribution over SID history spans, IG shares over the SID trie,
    training curves over the snapshots, ...) runs on a SID run as on a title run."""
    from test_audit import QUICK, _config, _data

    cfg = _config(tmp_path, tiny_ckpt, _data(tmp_path / "data"))
    cfg.write_text(cfg.read_text() + SID.format(representation="sid"))
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run)]) == 0
    assert main(["audit", str(run), *[a for s in QUICK for a in ("--set", s)]]) == 0
    titles = [
        s["title"] for s in json.loads((run / "audit" / "audit.json").read_text())["sections"]
    ]
    for name in ("attribution", "information gain", "over training", "Sensitivity"):
        assert any(name in t for t in titles), name


PREFIXMEM = """
[items.prefixmem]
table_rows = 101
memory_dim = 16
heads = 2
[items.prefixmem.pretrain]
epochs = 2
"""


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_prefixmem_run_trains_saves_and_recommend_reloads_the_encoder(
    tmp_path, tiny_ckpt, table_data, finetune
):
    from recbias.sidllm.prefixmem_attach import WEIGHTS_FILE

    items = SID.format(representation="sid").replace(
        "[items.sid]", 'encoder = "prefixmem"\n[items.sid]'
    )
    cfg = write_config(tmp_path, tiny_ckpt, table_data, items + PREFIXMEM)
    run = tmp_path / finetune
    sets = ["--set", f"model.finetune={finetune}", "--set", 'model.lora.target_modules=["q_proj"]']
    assert main(["run", str(cfg), "--run-dir", str(run), *sets]) == 0
    saved = run / ("adapter" if finetune == "lora" else "model")
    state = load_file(saved / WEIGHTS_FILE)
    assert state["out.weight"].abs().sum() > 0  # W_out starts at 0: it was trained
    assert not any("prefixmem" in k for k in load_file(next(saved.glob("*model*.safetensors"))))
    before = (run / "predictions" / "llm.jsonl").read_text()
    assert main(["recommend", str(cfg), "--run-dir", str(run), *sets]) == 0
    assert (run / "predictions" / "llm.jsonl").read_text() == before


def test_prefixmem_needs_semantic_ids(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data, '[items]\nencoder = "prefixmem"\n')
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    assert "items.encoder" in capsys.readouterr().err


def test_compare_runs_sid_methods_with_the_same_codes(tmp_path, tiny_ckpt, table_data):
    from recbias.compare import CompareConfig, run_comparison
    from recbias.config import load_config
    from test_compare import write_config as write_compare

    methods = """
[base.items]
representation = "sid"
[base.items.sid]
encoder = "tfidf"
levels = 2
codebook_size = 4

[[methods]]
name = "sft"

[[methods]]
name = "igd"
set = { "train.objective.name" = "igd" }

[[methods]]
name = "sft_lp0"
reuse_model_of = "sft"
set = { "decode.beam.length_penalty" = 0.0 }
"""
    paths = {"root": tmp_path, "ckpt": tiny_ckpt, "data": table_data}
    cfg = load_config(CompareConfig, write_compare(paths, tmp_path / "cmp.toml", methods))
    result = run_comparison(cfg, tmp_path / "out")
    assert result["status"] == {"seed-0/sft": "trained", "seed-0/igd": "trained",
                                "seed-0/sft_lp0": "decoded"}  # fmt: skip
    assert {"sft", "igd", "sft_lp0", "popularity"} <= set(result["comparison"]["methods"])
    codes = {m: json.loads((tmp_path / "out" / "seed-0" / m / "semantic_ids.json").read_text())
             for m in ("sft", "igd")}  # fmt: skip
    assert codes["sft"]["codes"] == codes["igd"]["codes"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "seed-0" / "igd" / "predictions"
                                          / "llm.jsonl").open()]  # fmt: skip
    assert rows and all(len(set(r["items"])) == len(r["items"]) for r in rows)
