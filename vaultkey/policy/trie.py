"""A segment trie over one group's rules for one capability: decisions in O(path depth).

The rules are the ``(rule, allows)`` entries of :func:`vaultkey.policy.engine._entries`,
already in precedence order (most specific first, deny before allow on ties). The
trie finds every rule that covers a target by walking the target's segments (and
the ``+`` branches), and returns the covering entry that comes first in that order:
the same answer as scanning the list, without looking at rules that cannot match.
A property test (tests/unit/test_policy_trie.py) checks this against the scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

E = TypeVar("E")


class _Node(Generic[E]):
    __slots__ = ("children", "key", "prefix")

    def __init__(self) -> None:
        self.children: dict[str, _Node[E]] = {}
        self.prefix: tuple[int, E] | None = None  # (rank, entry) of a prefix rule ending here
        self.key: tuple[int, E] | None = None  # ... of a key rule ending here


class RuleTrie(Generic[E]):
    """Index *entries* (in precedence order) by their rule segments."""

    def __init__(self, entries: Sequence[tuple[Sequence[str], bool, E]]) -> None:
        self._root: _Node[E] = _Node()
        for rank, (segs, is_prefix, entry) in enumerate(entries):
            node = self._root
            for seg in segs:
                node = node.children.setdefault(seg, _Node())
            slot = "prefix" if is_prefix else "key"
            if getattr(node, slot) is None:  # the first one is the one that wins
                setattr(node, slot, (rank, entry))

    def match(self, target: Sequence[str], target_is_prefix: bool) -> E | None:
        """The first entry (in precedence order) whose rule covers *target*."""
        best: tuple[int, E] | None = None
        depth_end = len(target)
        stack = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            found = node.prefix
            if found is not None and (best is None or found[0] < best[0]):
                best = found
            if depth == depth_end:
                found = node.key
                if not target_is_prefix and found is not None and (
                        best is None or found[0] < best[0]):
                    best = found
                continue
            seg = target[depth]
            child = node.children.get(seg)
            if child is not None:
                stack.append((child, depth + 1))
            if seg != "+":
                wild = node.children.get("+")
                if wild is not None:
                    stack.append((wild, depth + 1))
        return None if best is None else best[1]


__all__ = ["RuleTrie"]
