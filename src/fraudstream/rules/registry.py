"""Rule set versions in Valkey, and the watcher that hot-reloads them in workers.

Keys (``rules`` prefix; single-key commands only, so a Cluster works):

- ``rules:set:{version}`` — HASH: ``text`` (the YAML, byte for byte), ``published_at`` (epoch
  s), ``message``. The version is the content hash of the text, so publishing the same
  document twice is a no-op and a version always means the same rules.
- ``rules:history`` — ZSET: version -> first publication time (the history, oldest first).
- ``rules:active`` — STRING: the active version. Activation is this one ``SET``: it is written
  after the body in the same ordered pipeline, so a reader never sees a pointer to nothing.

Workers call `RuleWatcher.maybe_reload` between batches: one ``GET`` (~0.2 ms round trip, or
free when queued in the batch's pipeline), and a fetch + compile only when the pointer moved.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import yaml

from fraudstream.rules.errors import RegistryError, RuleError
from fraudstream.rules.ruleset import RuleSet, content_version, parse_ruleset
from fraudstream.rules.types import RuleSchema


@dataclass(frozen=True)
class VersionInfo:
    version: str
    published_at: float
    message: str
    active: bool


@dataclass(frozen=True)
class RuleSetDiff:
    """What changed from version ``old`` to ``new``, rule by rule, plus the text diff."""

    old: str
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    """Rule id -> ``"field: old -> new"`` lines."""
    settings: list[str] = field(default_factory=list)
    """Set-level changes (``mode``, ``description``)."""
    text: str = ""
    """Unified diff of the two documents."""

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "settings": self.settings,
        }


class RuleRegistry:
    """Publish, list, diff and load rule set versions."""

    def __init__(self, client: redis.Redis, schema: RuleSchema, prefix: str = "rules") -> None:
        self.client = client
        self.schema = schema
        self.prefix = prefix

    @property
    def active_key(self) -> str:
        return f"{self.prefix}:active"

    @property
    def history_key(self) -> str:
        return f"{self.prefix}:history"

    def set_key(self, version: str) -> str:
        return f"{self.prefix}:set:{version}"

    def publish(
        self, text: str, *, message: str = "", activate: bool = True, source: str = "<publish>"
    ) -> str:
        """Validate ``text`` against the schema, store it and (by default) make it active.

        Args:
            source: what errors name (the file the text came from).

        Returns:
            The version (content hash).

        Raises:
            RuleError: the document does not validate (nothing is stored).
        """
        version = parse_ruleset(text, self.schema, source=source).version
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(self.set_key(version), "text", text)
        pipe.hsetnx(self.set_key(version), "published_at", repr(time.time()))
        pipe.hsetnx(self.set_key(version), "message", message)
        pipe.zadd(self.history_key, {version: time.time()}, nx=True)
        if activate:
            pipe.set(self.active_key, version)
        pipe.execute()
        return version

    def activate(self, version: str) -> None:
        """Point ``rules:active`` at a published version (a rollback is an activate)."""
        self.text(version)
        self.client.set(self.active_key, version)

    def active_version(self) -> str | None:
        raw = self.client.get(self.active_key)
        return None if raw is None else _text(raw)

    def active(self) -> tuple[str, RuleSet]:
        """The active version and its compiled rule set."""
        version = self.active_version()
        if version is None:
            raise RegistryError("no active rule set: publish one first")
        return version, self.get(version)

    def text(self, version: str) -> str:
        raw = self.client.hget(self.set_key(version), "text")
        if raw is None:
            close = difflib.get_close_matches(version, [v.version for v in self.versions()], n=1)
            raise RegistryError(
                f"unknown rule set version '{version}'",
                hint=f"did you mean '{close[0]}'?" if close else None,
            )
        return _text(raw)

    def get(self, version: str) -> RuleSet:
        """A version, compiled against the current schema (errors name the version)."""
        text = self.text(version)
        if content_version(text) != version:
            raise RegistryError(f"rule set version '{version}' does not match its content")
        return parse_ruleset(text, self.schema, source=f"rules@{version}")

    def versions(self) -> list[VersionInfo]:
        """Every published version, oldest first."""
        active = self.active_version()
        history = self.client.zrange(self.history_key, 0, -1)
        pipe = self.client.pipeline(transaction=False)
        for raw in history:
            pipe.hmget(self.set_key(_text(raw)), ["published_at", "message"])
        out = []
        for raw, (published, message) in zip(history, pipe.execute(), strict=True):
            version = _text(raw)
            out.append(
                VersionInfo(
                    version,
                    float(_text(published)) if published is not None else 0.0,
                    _text(message) if message is not None else "",
                    version == active,
                )
            )
        return out

    def diff(self, old: str, new: str) -> RuleSetDiff:
        """Rule-by-rule differences between two published versions."""
        return diff_texts(self.text(old), self.text(new), old=old, new=new)


def diff_texts(old_text: str, new_text: str, *, old: str = "old", new: str = "new") -> RuleSetDiff:
    """Differences between two rule set documents (parsed, not compiled: a version that no
    longer compiles against today's features can still be compared)."""
    a, b = _plain(old_text), _plain(new_text)
    rules_a, rules_b = a.pop("rules"), b.pop("rules")
    changed: dict[str, list[str]] = {}
    for rule_id in rules_a.keys() & rules_b.keys():
        ra, rb = rules_a[rule_id], rules_b[rule_id]
        lines = [
            f"{key}: {ra.get(key)!r} -> {rb.get(key)!r}"
            for key in sorted(ra.keys() | rb.keys())
            if ra.get(key) != rb.get(key)
        ]
        if lines:
            changed[rule_id] = lines
    settings = [
        f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key) != b.get(key)
    ]
    text = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=old,
            tofile=new,
        )
    )
    return RuleSetDiff(
        old,
        new,
        sorted(rules_b.keys() - rules_a.keys()),
        sorted(rules_a.keys() - rules_b.keys()),
        dict(sorted(changed.items())),
        settings,
        text,
    )


def _plain(text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RuleError(f"invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RuleError("a rule set document must be a mapping")
    rules = {}
    for rule in doc.get("rules") or []:
        if isinstance(rule, dict) and "id" in rule:
            rules[str(rule["id"])] = {k: v for k, v in rule.items() if k != "id"}
    out = {k: v for k, v in doc.items() if k != "rules"}
    out["rules"] = rules
    return out


class RuleWatcher:
    """Keeps a worker's rule set in step with ``rules:active``.

    A version that fails to compile (say the feature list changed under it) is not retried
    on every batch: the watcher keeps the rules it has, remembers the failure in ``error`` and
    tries again only when the pointer moves.
    """

    def __init__(self, registry: RuleRegistry, fallback: RuleSet | None = None) -> None:
        self.registry = registry
        self.ruleset = fallback
        self.version: str | None = None
        self.error: RuleError | None = None
        self._failed: str | None = None

    def maybe_reload(self) -> bool:
        """One GET; fetch and compile only on change. True when the rule set was replaced."""
        return self.follow(self.registry.active_version())

    @property
    def pointer_key(self) -> str:
        """The key of ``rules:active``, for a caller reading it along with others
        (`follow`)."""
        return self.registry.active_key

    def follow(self, pointer: str | bytes | None) -> bool:
        """`maybe_reload` with the pointer's value already read."""
        version = None if pointer is None else _text(pointer)
        if version is None or version == self.version or version == self._failed:
            return False
        try:
            ruleset = self.registry.get(version)
        except RuleError as exc:
            self.error, self._failed = exc, version
            return False
        self.ruleset, self.version, self.error, self._failed = ruleset, version, None, None
        return True


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
