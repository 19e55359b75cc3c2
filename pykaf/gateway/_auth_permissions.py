"""Per-principal topic permissions: which actions a principal may take on which topics.

Rules are ``{topic pattern: [actions]}``; a pattern is a topic name, a prefix ending in
``*`` (``"logs-*"``) or ``"*"`` (every topic); an action is "produce", "describe" (read
metadata), "create", "delete" (delete the topic), or "*" (all four). A principal's rules
and those under the principal ``"*"`` (every authenticated principal) add up; nothing is
allowed that no rule names.

"delete" is its own action, not part of "create": a principal that may make topics
(a team's ``"team-*"`` prefix, say) is not thereby trusted to destroy one and its data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal, TypeAlias

__all__ = ["ACTIONS", "Action", "RuleSet", "check_rules"]

#: What a principal may be allowed on a topic.
Action: TypeAlias = Literal["produce", "describe", "create", "delete"]
ACTIONS: Final = ("produce", "describe", "create", "delete")


def check_rules(rules: object, where: str) -> None:
    """Raise ValueError naming ``where`` unless ``rules`` is ``{pattern: [actions]}``."""
    if not isinstance(rules, Mapping):
        raise ValueError(f"{where} must be a table of topic pattern = [actions]")
    for pattern, actions in rules.items():
        if not isinstance(pattern, str) or not pattern or "*" in pattern[:-1]:
            raise ValueError(
                f"{where}: {pattern!r} is not a topic pattern (a topic name, a prefix"
                " ending in '*' such as 'logs-*', or '*')"
            )
        if isinstance(actions, str) or not isinstance(actions, Iterable):
            raise ValueError(f"{where}: the actions for {pattern!r} must be a list")
        for action in actions:
            if action not in (*ACTIONS, "*"):
                raise ValueError(
                    f"{where}: {action!r} (for {pattern!r}) is not an action; use"
                    f" {', '.join(ACTIONS)} or '*'"
                )


class RuleSet:
    """One principal's rules, compiled: exact topics in a dict, prefixes in a list."""

    __slots__ = ("_any", "_exact", "_prefixes")

    def __init__(self, rules: Mapping[str, Iterable[str]]) -> None:
        self._exact: dict[str, frozenset[str]] = {}
        self._prefixes: list[tuple[str, frozenset[str]]] = []
        self._any: frozenset[str] = frozenset()
        for pattern, listed in rules.items():
            actions = frozenset(ACTIONS if "*" in listed else listed)
            if pattern == "*":
                self._any |= actions
            elif pattern.endswith("*"):
                self._prefixes.append((pattern[:-1], actions))
            else:
                self._exact[pattern] = self._exact.get(pattern, frozenset()) | actions

    @classmethod
    def everything(cls) -> RuleSet:
        return cls({"*": ACTIONS})

    def merged(self, other: RuleSet) -> RuleSet:
        both = RuleSet({})
        both._any = self._any | other._any
        both._prefixes = self._prefixes + other._prefixes
        both._exact = dict(self._exact)
        for topic, actions in other._exact.items():
            both._exact[topic] = both._exact.get(topic, frozenset()) | actions
        return both

    def allows(self, action: str, topic: str | None) -> bool:
        """``topic`` None asks about the cluster as a whole (listing topics): allowed
        when some rule grants ``action`` at all; the caller then filters what it shows
        with ``allows(action, topic)`` per topic."""
        if action in self._any:
            return True
        if topic is None:
            return any(action in a for a in self._exact.values()) or any(
                action in a for _, a in self._prefixes
            )
        if action in self._exact.get(topic, ()):
            return True
        return any(action in a and topic.startswith(p) for p, a in self._prefixes)
