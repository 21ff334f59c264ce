"""Prompt templates that record where every part of the prompt sits in token space.

One :class:`PromptBuilder` is used for training, decoding and diagnostics alike, so the text the model
is trained on is exactly the text it is decoded from. A prompt is a list of :class:`Segment` pieces
(task text, one piece per history item, the response prefix); each piece is tokenized on its own
(``add_special_tokens=False``) and the ids are concatenated, so token spans fall out of tokenizing
and never depend on hard-coded offsets. The target (title + terminator, then EOS) is tokenized on its
own the same way, which is also how the decoding trie is built.

    builder = PromptBuilder(tokenizer, PromptConfig(template="alpaca"), Domain("movie", "movies"))
    enc = builder.encode(["Toy Story", "Heat"], history_items=[0, 5], target="Casino")
    enc.input_ids, enc.target_ids, enc.spans_of("history")
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal, Protocol

from transformers import PreTrainedTokenizerBase

from recbias.domain import Domain
from recbias.errors import ConfigError, ModelError

SegmentKind = Literal["task", "history", "response_prefix", "target"]

ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request. "
)

# D3/IGD layout, with the typos of their checkpoints' text ("recetenly", "palyed") corrected.
D3_HEAD = (
    ALPACA_PREAMBLE + "\n\n### Instruction:\n{instruction}\n### User Input: \nThe user has {verb} "
    "the following {items} before: "
)
D3_INSTRUCTION = (
    "Given a list of {items} the user recently enjoyed, please write a new {item} that the user "
    "may like"
)


@dataclass
class PromptConfig:
    template: Literal["alpaca", "d3", "igd", "chat"] = field(
        default="alpaca",
        metadata={
            "help": "alpaca = BIGRec/MSL/GDRT (default); d3 = D3 (quoted titles, '\"title\"\\n'); "
            "igd = IGD (unquoted titles, 'title\\n'); chat = the model's own chat template"
        },
    )
    history_placeholder: str = field(
        default="N/A", metadata={"help": "text that stands for the history when it is masked"}
    )
    instruction: str | None = field(
        default=None,
        metadata={
            "help": "the task sentence ({item}, {items}, {verb} = domain words); unset = the "
            "template's own wording"
        },
    )


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    text: str
    item: int | None = None


@dataclass(frozen=True)
class Span:
    """Half-open token range ``[start, end)`` of one segment in ``input_ids + target_ids``."""

    kind: SegmentKind
    start: int
    end: int
    item: int | None = None


@dataclass
class EncodedPrompt:
    input_ids: list[int]
    spans: list[Span]
    target_ids: list[int] = field(default_factory=list)

    def spans_of(self, kind: SegmentKind) -> list[Span]:
        return [s for s in self.spans if s.kind == kind]

    @property
    def full_ids(self) -> list[int]:
        return self.input_ids + self.target_ids


@dataclass(frozen=True)
class _Style:
    """Text pieces of one template; ``{item}``, ``{items}``, ``{verb}`` are domain words and
    ``{instruction}`` in ``head`` is the task sentence (``instruction`` unless configured)."""

    head: str
    instruction: str
    quote: str
    sep: str
    tail: str
    response_prefix: str
    target: str


_STYLES: dict[str, _Style] = {
    "alpaca": _Style(
        head=ALPACA_PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Input:\n"
        "The user has {verb} the following {items} before: ",
        instruction="Given a list of {items} the user has {verb} before, please recommend a new "
        "{item} that the user likes to the user.",
        quote='"',
        sep=", ",
        tail="\n\n",
        response_prefix="### Response:\n",
        target='"{title}"',
    ),
    "d3": _Style(
        head=D3_HEAD,
        instruction=D3_INSTRUCTION,
        quote='"',
        sep=", ",
        tail="\n\n",
        response_prefix="### Response: \n",
        target='"{title}"\n',
    ),
    "igd": _Style(
        head=D3_HEAD,
        instruction=D3_INSTRUCTION,
        quote="",
        sep=", ",
        tail="\n\n",
        response_prefix="### Response: \n",
        target="{title}\n",
    ),
    "chat": _Style(
        head="{instruction} Answer with the title only.\nThe user has {verb} the following "
        "{items} before: ",
        instruction="Given a list of {items} the user has {verb} before, recommend a new {item} "
        "that the user will like.",
        quote='"',
        sep=", ",
        tail="",
        response_prefix="",
        target="{title}",
    ),
}

_SENTINEL = "\u2063RECBIAS_USER\u2063"


def fill_domain_words(text: str, words: dict[str, str]) -> str:
    """``text`` with ``{item}``, ``{items}``, ``{verb}`` filled; other braces are an error."""
    try:
        return text.format(**words)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"config key 'prompt.instruction': only {{item}}, {{items}} and {{verb}} may be "
            f"used, got {text!r} ({exc})"
        ) from None


class ItemText(Protocol):
    """How items are spelled in prompts: a history item and a target, from the item's title
    (e.g. :class:`recbias.sidllm.items.SidText` spells them as semantic-ID tokens)."""

    def history(self, title: str) -> str: ...

    def target(self, title: str) -> str: ...


class TitleText:
    """Items spelled by their titles (the default)."""

    def history(self, title: str) -> str:
        return title

    def target(self, title: str) -> str:
        return title


class PromptBuilder:
    """Renders and tokenizes prompts of one template for one tokenizer and domain; ``items``
    spells the items (their titles unless given)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        cfg: PromptConfig,
        domain: Domain,
        items: ItemText | None = None,
    ):
        if cfg.template not in _STYLES:
            raise ConfigError(f"prompt.template: unknown template '{cfg.template}'")
        if tokenizer.eos_token_id is None:
            raise ModelError("the tokenizer has no EOS token; targets need a terminator")
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.domain = domain
        self.items: ItemText = items if items is not None else TitleText()
        style = _STYLES[cfg.template]
        words = {"item": domain.item, "items": domain.items, "verb": domain.verb}
        self.style = style
        self.instruction = fill_domain_words(cfg.instruction or style.instruction, words)
        self.head = style.head.format(instruction=self.instruction, **words)
        self.tail = style.tail
        self.response_prefix = style.response_prefix
        if cfg.template == "chat":
            self._wrap_chat()
        self.bos = self._bos_prefix()

    def _wrap_chat(self) -> None:
        """Split the model's chat template around a sentinel user message."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError("prompt.template = 'chat' but the tokenizer has no chat template")
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
        )
        before, after = text.split(_SENTINEL)
        self.head = before + self.head
        self.response_prefix = after + self.response_prefix

    def _bos_prefix(self) -> list[int]:
        """BOS id if this tokenizer adds it to ordinary text (Llama-2 style), else nothing."""
        bos = self.tokenizer.bos_token_id
        if bos is None or self.cfg.template == "chat":
            return []  # chat templates spell their own special tokens
        ids = self.tokenizer("a", add_special_tokens=True).input_ids
        return [bos] if ids and ids[0] == bos else []

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - titles repeat across thousands of prompts
    def _tok(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False).input_ids)

    def segments(self, titles: list[str], items: list[int] | None = None) -> list[Segment]:
        """Prompt segments for a history (oldest first); an empty history gets the placeholder."""
        items = items if items is not None else [None] * len(titles)  # type: ignore[list-item]
        segs = [Segment("task", self.head)]
        if not titles:
            segs.append(Segment("task", self.cfg.history_placeholder))
        q = self.style.quote
        for i, (title, item) in enumerate(zip(titles, items, strict=True)):
            if i:
                segs.append(Segment("task", self.style.sep))
            segs.append(Segment("history", f"{q}{self.items.history(title)}{q}", item))
        if self.tail:
            segs.append(Segment("task", self.tail))
        segs.append(Segment("response_prefix", self.response_prefix))
        return segs

    def target_text(self, title: str) -> str:
        return self.style.target.format(title=self.items.target(title))

    def encode_target(self, title: str) -> list[int]:
        """Target ids: the title with its terminator, then EOS; also the trie's item sequence."""
        return [*self._tok(self.target_text(title)), self.tokenizer.eos_token_id]

    def encode_segments(self, segs: list[Segment], target: str | None = None) -> EncodedPrompt:
        ids: list[int] = list(self.bos)
        spans: list[Span] = []
        for seg in segs:
            piece = self._tok(seg.text) if seg.text else ()
            spans.append(Span(seg.kind, len(ids), len(ids) + len(piece), seg.item))
            ids.extend(piece)
        enc = EncodedPrompt(ids, spans)
        if target is not None:
            enc.target_ids = self.encode_target(target)
            enc.spans.append(Span("target", len(ids), len(ids) + len(enc.target_ids)))
        return enc

    def encode(
        self, titles: list[str], history_items: list[int] | None = None, target: str | None = None
    ) -> EncodedPrompt:
        return self.encode_segments(self.segments(titles, history_items), target)

    def render(self, titles: list[str], target: str | None = None) -> str:
        """The prompt as plain text (what a peer script would feed the model)."""
        text = "".join(s.text for s in self.segments(titles))
        return text + (self.target_text(target) if target is not None else "")
