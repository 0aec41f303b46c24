"""One card registry, written once: methods, datasets, metrics and presets are each a ``CardRegistry``.

A registry maps a name to a card (a frozen dataclass with a ``name``), built-in cards first in their table
order, then plugins' cards (``refsr-bench --plugin FILE``), which may not shadow a built-in name or alias.
Lookups of an unknown name raise ``protocols.errors.unknown_name``'s UserError, which lists the valid names.
No torch import: listing and lookups read cards only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Protocol, TypeVar

from protocols.errors import UserError, unknown_name


class Card(Protocol):
    @property
    def name(self) -> str: ...


CardT = TypeVar("CardT", bound=Card)


def _no_aliases(_card: object) -> tuple[str, ...]:
    return ()


class CardRegistry(MutableMapping[str, CardT]):
    """Cards by name (a mutable mapping in registration order) plus aliases, fnmatch listing and checked lookups.

    ``kind`` names the cards in messages ("method", "dataset", ...); ``aliases_of`` gives a card's other names.
    Item assignment (``registry[name] = card``) bypasses the built-in check; plugins use ``register``.
    """

    def __init__(
        self, kind: str, builtins: Iterable[CardT], aliases_of: Callable[[CardT], Iterable[str]] = _no_aliases
    ) -> None:
        self.kind = kind
        self.aliases_of = aliases_of
        self._cards: dict[str, CardT] = {}
        self.aliases: dict[str, str] = {}  # alias -> card name
        for card in builtins:
            self._cards[card.name] = card
            self.aliases.update({alias: card.name for alias in aliases_of(card)})
        self.builtin_names = frozenset(self._cards) | frozenset(self.aliases)

    # --- mapping ---------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> CardT:
        return self._cards[name]

    def __setitem__(self, name: str, card: CardT) -> None:
        self._cards[name] = card

    def __delitem__(self, name: str) -> None:
        del self._cards[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cards)

    def __len__(self) -> int:
        return len(self._cards)

    def copy(self) -> CardRegistry[CardT]:
        """An independent registry with the same cards, aliases and built-in names (tests isolate plugins)."""
        twin: CardRegistry[CardT] = CardRegistry(self.kind, (), self.aliases_of)
        twin._cards, twin.aliases, twin.builtin_names = dict(self._cards), dict(self.aliases), self.builtin_names
        return twin

    # --- plugins ---------------------------------------------------------------------------------------
    def check_free(self, name: str) -> None:
        """A UserError when ``name`` is a built-in card's name or alias."""
        if name in self.builtin_names:
            raise UserError(f"{self.kind} name {name!r} is taken by a built-in {self.kind}")

    def register(self, card: CardT) -> None:
        """Add (or replace) a plugin's card; its name and aliases must not be a built-in's."""
        aliases = tuple(self.aliases_of(card))
        for name in (card.name, *aliases):
            self.check_free(name)
        self._cards[card.name] = card
        self.aliases.update({alias: card.name for alias in aliases})

    # --- lookups ---------------------------------------------------------------------------------------
    def names(self, pattern: str = "*") -> list[str]:
        """Card names (not aliases) matching an fnmatch ``pattern``, sorted."""
        return sorted(name for name in self._cards if fnmatch.fnmatchcase(name, pattern))

    def lookup(self, name: str) -> CardT:
        """The card called ``name`` (or aliased so); an unknown name is a UserError listing the valid names."""
        name = self.aliases.get(name, name)
        if name not in self._cards:
            raise unknown_name(self.kind, name, self.names())
        return self._cards[name]

    def cards(self, pattern: str = "*") -> list[CardT]:
        """Cards whose name or an alias matches ``pattern``, sorted by name."""
        names = set(self.names(pattern))
        names |= {target for alias, target in self.aliases.items() if fnmatch.fnmatchcase(alias, pattern)}
        return [self._cards[name] for name in sorted(names)]

    def expand(self, patterns: Iterable[str]) -> list[str]:
        """Names, aliases and fnmatch patterns -> card names in first-seen order; a pattern matching nothing is
        a UserError listing the valid names."""
        expanded: list[str] = []
        for item in patterns:
            item = self.aliases.get(item, item)
            hits = self.names(item)
            if not hits:
                raise unknown_name(self.kind, item, self.names())
            expanded.extend(hit for hit in hits if hit not in expanded)
        return expanded
