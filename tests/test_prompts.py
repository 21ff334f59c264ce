from __future__ import annotations

import pytest

import tiny
from recbias.errors import ConfigError
from recbias.prompts import Domain, PromptBuilder, PromptConfig

CHAT = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
TITLES = ["Toy Story", "Heat", "Star Wars"]


def _builder(tok, template="alpaca"):
    return PromptBuilder(tok, PromptConfig(template=template), Domain("movie", "movies"))


@pytest.mark.parametrize("template", ["alpaca", "d3", "igd"])
def test_history_spans_decode_to_item_titles(any_tok, template):
    b = _builder(any_tok, template)
    enc = b.encode(TITLES, [10, 11, 12], target="Casino")
    hist = enc.spans_of("history")
    assert [s.item for s in hist] == [10, 11, 12]
    for span, title in zip(hist, TITLES, strict=True):
        text = any_tok.decode(enc.full_ids[span.start : span.end])
        assert text.strip().strip('"') == title


def test_spans_tile_the_sequence_without_gaps(any_tok):
    enc = _builder(any_tok).encode(TITLES, [0, 1, 2], target="Heat Wave")
    ends = [s.start for s in enc.spans[1:]]
    assert [s.end for s in enc.spans[:-1]] == ends
    assert enc.spans[-1].end == len(enc.full_ids)
    assert enc.spans[0].start == len(_builder(any_tok).bos)


def test_target_span_is_title_then_eos(any_tok):
    b = _builder(any_tok)
    enc = b.encode(TITLES, target="Heat Wave")
    (span,) = enc.spans_of("target")
    ids = enc.full_ids[span.start : span.end]
    assert ids == enc.target_ids == b.encode_target("Heat Wave")
    assert ids[-1] == any_tok.eos_token_id
    assert any_tok.decode(ids[:-1]).strip() == '"Heat Wave"'


def test_response_prefix_ends_the_prompt(any_tok):
    enc = _builder(any_tok).encode(TITLES)
    (span,) = enc.spans_of("response_prefix")
    assert span.end == len(enc.input_ids)
    assert "Response" in any_tok.decode(enc.input_ids[span.start : span.end])


def test_training_and_inference_prompts_are_identical(any_tok):
    b = _builder(any_tok)
    train = b.encode(TITLES, target="Casino")
    infer = b.encode(TITLES)
    assert train.input_ids == infer.input_ids


def test_empty_history_uses_placeholder(byte_tok):
    b = _builder(byte_tok)
    enc = b.encode([])
    assert not enc.spans_of("history")
    assert "N/A" in byte_tok.decode(enc.input_ids)


def test_domain_words_come_from_the_card(byte_tok):
    text = PromptBuilder(byte_tok, PromptConfig(), Domain("book", "books")).render(["Dune"])
    assert "list of books the user has read before" in text
    assert "recommend a new book" in text


def test_render_matches_decoded_tokens(meta_tok):
    b = _builder(meta_tok, "d3")
    text = b.render(TITLES, target="Heat")
    assert '"Heat"\n' in text and text.startswith("Below is an instruction")


def test_chat_template_wraps_the_prompt():
    tok = tiny.byte_level_tokenizer()
    tok.chat_template = CHAT
    b = PromptBuilder(tok, PromptConfig(template="chat"), Domain("movie", "movies"))
    enc = b.encode(TITLES, [0, 1, 2], target="Heat")
    assert tok.decode(enc.input_ids).startswith("<s>user\n")
    (prefix,) = enc.spans_of("response_prefix")
    assert tok.decode(enc.input_ids[prefix.start : prefix.end]) == "</s>\n<s>assistant\n"
    assert [s.item for s in enc.spans_of("history")] == [0, 1, 2]
    assert enc.target_ids[-1] == tok.eos_token_id


def test_chat_template_required_for_chat(byte_tok):
    from recbias.errors import ModelError

    with pytest.raises(ModelError, match="no chat template"):
        PromptBuilder(byte_tok, PromptConfig(template="chat"), Domain())


@pytest.mark.parametrize("template", ["alpaca", "d3", "igd"])
def test_configured_instruction_replaces_only_the_task_sentence(any_tok, template):
    domain = Domain("movie", "movies")
    default = PromptBuilder(any_tok, PromptConfig(template=template), domain)
    cfg = PromptConfig(template=template, instruction="Name one more {item} they {verb}.")
    custom = PromptBuilder(any_tok, cfg, domain)
    assert default.instruction in default.head
    assert custom.head == default.head.replace(
        default.instruction, "Name one more movie they watched."
    )
    enc = custom.encode(["Heat"], history_items=[3], target="Casino")
    assert [s.kind for s in enc.spans][:2] == ["task", "history"]


def test_instruction_with_an_unknown_placeholder_names_the_key(byte_tok):
    with pytest.raises(ConfigError, match="prompt.instruction"):
        PromptBuilder(byte_tok, PromptConfig(instruction="a {genre}"), Domain("movie", "movies"))
