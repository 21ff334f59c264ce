"""The domain words of a dataset (from its card), used by prompt templates."""

from __future__ import annotations

from dataclasses import dataclass

# The verb used with each item word in instructions ("the user has watched ...").
VERBS = {"movie": "watched", "book": "read", "toy": "played with", "game": "played"}


@dataclass(frozen=True)
class Domain:
    """Nouns for the items in prompts, e.g. ``Domain("movie", "movies")``."""

    item: str = "item"
    items: str = "items"

    @property
    def verb(self) -> str:
        return VERBS.get(self.item.split()[-1], "interacted with")
