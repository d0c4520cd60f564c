"""Rules (labeling functions): the one owner of a project's rules, their validation, storage and
evaluation.

A rule votes for one of the project's labels when its matcher matches an item, and abstains
otherwise: keywords or phrases (whole words, case-insensitive), a regular expression, or a
metadata field's value (`labelloop.v1.Rule`). A project's rules are one `RuleSet` stored in Redis
under `<prefix>:rules:<project>`, whose `version` goes up by one at every change (add, replace,
remove), so a vote names the rule set version that cast it.

Regular expressions run on every item in the inference process, so they are compiled with RE2
(`google-re2`), whose matching time is linear in the text: no pattern can backtrack
catastrophically. RE2 has no backreferences or look-around; such a pattern is refused with
RE2's reason. Patterns are at most `MAX_PATTERN_CHARS` long, and a rule only ever reads the first
`MAX_SCAN_CHARS` characters of an item.

Pure parts (`validate_rule`, `compile_pattern`, `parse_rule_file`, `CompiledRules`, `rule_stats`) do no I/O; `RuleStore`
is the Redis side, written by the ingest process's `RuleService` and read (cached) by inference.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]
import redis

from labelloop.core.errors import InvalidArgument, NotFound
from labelloop.core.redis_store import Keys, unavailable
from labelloop.v1 import common_pb2, events_pb2, rules_pb2

RULE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_PATTERN_CHARS = 256
MAX_TERMS = 200
MAX_TERM_CHARS = 100
MAX_RULES = 200
MAX_SCAN_CHARS = 20_000
SOURCE_PREFIX = "rule:"


def _re2_options(ignore_case: bool) -> Any:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    options.max_mem = 8 << 20  # bounds the compiled program of a huge repeat count
    return options


def source_name(rule_name: str) -> str:
    """The source name a rule's votes carry: "rule:<name>"."""
    return SOURCE_PREFIX + rule_name


def compile_pattern(pattern: str, ignore_case: bool = False, field: str = "rule.regex.pattern") -> Any:
    """`pattern` compiled with RE2 (linear-time matching); InvalidArgument (naming `field`) when
    it is empty, too long, or not a pattern RE2 accepts (backreferences, look-around)."""
    if not pattern:
        raise InvalidArgument(field, "empty pattern")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidArgument(field, f"{len(pattern)} characters, over the limit of {MAX_PATTERN_CHARS}")
    try:
        return re2.compile(pattern, _re2_options(ignore_case))
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise InvalidArgument(
            field, f"not a regular expression RE2 accepts ({reason}; no backreferences or look-around)"
        ) from None


def validate_rule(rule: rules_pb2.Rule, labels: Sequence[str]) -> rules_pb2.Rule:
    """`rule` normalized (terms and values stripped, deduplicated, in order); InvalidArgument
    names the first bad field."""
    out = rules_pb2.Rule()
    out.CopyFrom(rule)
    if not RULE_NAME.match(out.name):
        raise InvalidArgument(
            "rule.name", f"{out.name!r} is not a valid rule name (1-64 of letters, digits, '-', '_', '.')"
        )
    if out.label not in labels:
        raise InvalidArgument("rule.label", f"{out.label!r} is not one of the project's labels")
    kind = out.WhichOneof("matcher")
    if kind is None:
        raise InvalidArgument("rule", "needs keywords, a regex or a metadata matcher")
    if kind == "keywords":
        terms = _distinct(" ".join(t.split()) for t in out.keywords.terms)
        if not terms:
            raise InvalidArgument("rule.keywords.terms", "at least one non-empty keyword or phrase")
        if len(terms) > MAX_TERMS:
            raise InvalidArgument("rule.keywords.terms", f"{len(terms)} terms, over the limit of {MAX_TERMS}")
        long = [t for t in terms if len(t) > MAX_TERM_CHARS]
        if long:
            raise InvalidArgument(
                "rule.keywords.terms", f"{long[0][:20]!r}... is over {MAX_TERM_CHARS} characters"
            )
        del out.keywords.terms[:]
        out.keywords.terms.extend(terms)
    elif kind == "regex":
        compile_pattern(out.regex.pattern, out.regex.ignore_case)
    else:
        if not out.metadata.field.strip():
            raise InvalidArgument("rule.metadata.field", "empty field name")
        values = _distinct(v.strip() for v in out.metadata.values)
        if not values:
            raise InvalidArgument("rule.metadata.values", "at least one non-empty value")
        del out.metadata.values[:]
        out.metadata.values.extend(values)
    return out


def _distinct(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


@dataclass(frozen=True)
class _Compiled:
    name: str
    label: str
    pattern: Any = None  # a compiled stdlib or RE2 pattern: `.search(text)`
    field: str = ""
    values: frozenset[str] = frozenset()

    def matches(self, text: str, metadata: Any) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text) is not None
        return metadata.get(self.field) in self.values


def _compile(rule: rules_pb2.Rule) -> _Compiled:
    kind = rule.WhichOneof("matcher")
    if kind == "keywords":
        alternatives = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in rule.keywords.terms)
        return _Compiled(
            rule.name, rule.label, re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
        )
    if kind == "regex":
        return _Compiled(rule.name, rule.label, compile_pattern(rule.regex.pattern, rule.regex.ignore_case))
    return _Compiled(rule.name, rule.label, field=rule.metadata.field, values=frozenset(rule.metadata.values))


class CompiledRules:
    """A rule set ready to apply: `votes(item)` is every matching rule's vote, in name order."""

    def __init__(self, rule_set: rules_pb2.RuleSet) -> None:
        self.version = rule_set.version
        self.names = [r.name for r in rule_set.rules]
        self.labels = [r.label for r in rule_set.rules]
        self._rules = [_compile(r) for r in rule_set.rules]

    def __len__(self) -> int:
        return len(self._rules)

    def labels_of(self, item: common_pb2.Item) -> list[str | None]:
        """Per rule (in `names` order), the label it votes for on `item`, or None (abstains)."""
        text = item.content.text[:MAX_SCAN_CHARS] if item.content.WhichOneof("body") == "text" else ""
        return [r.label if r.matches(text, item.metadata) else None for r in self._rules]

    def votes(self, item: common_pb2.Item) -> list[events_pb2.SourceVote]:
        """The votes of the rules that match `item`."""
        return [
            events_pb2.SourceVote(source=source_name(name), label=label, version=self.version)
            for name, label in zip(self.names, self.labels_of(item), strict=True)
            if label is not None
        ]


@dataclass(frozen=True)
class RuleStats:
    """Snorkel-style analysis of one rule over a set of items.

    coverage: share of items it votes on; overlaps: share of items it votes on where another rule
    votes too; conflicts: share where another rule votes for a different label; accuracy: share of
    its votes on human-labeled items that agree with the human label (None without any)."""

    name: str
    label: str
    votes: int
    coverage: float
    overlaps: float
    conflicts: float
    judged: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.judged if self.judged else None


def rule_stats(rules: CompiledRules, items: Sequence[tuple[common_pb2.Item, str | None]]) -> list[RuleStats]:
    """Each rule's statistics over `items`: pairs of an item and its human label (None when the
    item has no human label: it counts for coverage, overlaps and conflicts, not for accuracy)."""
    n = len(rules)
    votes = [0] * n
    overlaps = [0] * n
    conflicts = [0] * n
    judged = [0] * n
    correct = [0] * n
    for item, gold in items:
        cast = rules.labels_of(item)
        voters = [i for i, label in enumerate(cast) if label is not None]
        for i in voters:
            votes[i] += 1
            if len(voters) > 1:
                overlaps[i] += 1
            if any(cast[j] != cast[i] for j in voters):
                conflicts[i] += 1
            if gold is not None:
                judged[i] += 1
                correct[i] += cast[i] == gold
    total = max(len(items), 1)
    return [
        RuleStats(
            name=rules.names[i],
            label=rules.labels[i],
            votes=votes[i],
            coverage=votes[i] / total,
            overlaps=overlaps[i] / total,
            conflicts=conflicts[i] / total,
            judged=judged[i],
            correct=correct[i],
        )
        for i in range(n)
    ]


class RuleStore:
    """A project's rule set in Redis, versioned; `compiled` caches for `cache_s` seconds."""

    def __init__(self, client: redis.Redis, key_prefix: str, cache_s: float = 2.0) -> None:
        self.client = client
        self.keys = Keys(key_prefix)
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, CompiledRules]] = {}
        self._lock = threading.Lock()

    def _key(self, project_id: str) -> str:
        return self.keys("rules", project_id)

    def get(self, project_id: str) -> rules_pb2.RuleSet:
        """The project's rule set (version 0 and no rules when it never had any)."""
        try:
            raw = self.client.get(self._key(project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        rule_set = rules_pb2.RuleSet(project_id=project_id)
        if raw is not None:
            rule_set.ParseFromString(raw)  # type: ignore[arg-type]
        return rule_set

    def compiled(self, project_id: str) -> CompiledRules:
        """The project's rules compiled, re-read at most every `cache_s` seconds."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(project_id)
        if hit and now - hit[0] < self.cache_s:
            return hit[1]
        rule_set = self.get(project_id)
        compiled = hit[1] if hit and hit[1].version == rule_set.version else CompiledRules(rule_set)
        with self._lock:
            self._cache[project_id] = (now, compiled)
        return compiled

    def add(self, project_id: str, rule: rules_pb2.Rule, labels: Sequence[str]) -> rules_pb2.RuleSet:
        """Add `rule` (validated against `labels`) or replace the one of its name; the new set."""
        valid = validate_rule(rule, labels)

        def change(rule_set: rules_pb2.RuleSet) -> None:
            kept = [r for r in rule_set.rules if r.name != valid.name]
            if len(kept) >= MAX_RULES:
                raise InvalidArgument("rule", f"the project has {len(kept)} rules, the limit")
            del rule_set.rules[:]
            rule_set.rules.extend(sorted([*kept, valid], key=lambda r: r.name))

        return self._update(project_id, change)

    def remove(self, project_id: str, name: str) -> rules_pb2.RuleSet:
        """Remove the rule `name`; NotFound when the project has none of that name."""

        def change(rule_set: rules_pb2.RuleSet) -> None:
            kept = [r for r in rule_set.rules if r.name != name]
            if len(kept) == len(rule_set.rules):
                raise NotFound(f"project {project_id!r} has no rule {name!r}")
            del rule_set.rules[:]
            rule_set.rules.extend(kept)

        return self._update(project_id, change)

    def _update(self, project_id: str, change: Any) -> rules_pb2.RuleSet:
        """Read, change and write the rule set atomically (optimistic WATCH/MULTI), version + 1."""
        key = self._key(project_id)
        try:
            with self.client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        rule_set = rules_pb2.RuleSet(project_id=project_id)
                        if raw is not None:
                            rule_set.ParseFromString(raw)  # type: ignore[arg-type]
                        change(rule_set)
                        rule_set.version += 1
                        pipe.multi()
                        pipe.set(key, rule_set.SerializeToString())
                        pipe.execute()
                        return rule_set
                    except redis.WatchError:
                        continue
        except redis.RedisError as exc:
            raise unavailable(exc) from exc


def parse_rule_file(text: str) -> list[rules_pb2.Rule]:
    """The rules of a rule file (YAML; the format `labelloop rules import` reads and the bench's
    `--rules` takes): a list under `rules:`, each with `name`, `label` and one of `keywords` (a
    list of words or phrases), `regex` (a pattern, with optional `ignore_case: true`) or
    `metadata` (`{field: F, values: [...]}`). InvalidArgument names the rule and field that is
    wrong; labels are checked when the rules are added to a project."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument("rules file", f"not valid YAML: {exc}") from None
    entries = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidArgument("rules", "the file needs a top-level `rules:` list")
    out = []
    for index, entry in enumerate(entries):
        where = f"rules[{index}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(where, "each rule is a mapping with name, label and a matcher")
        unknown = set(entry) - {"name", "label", "keywords", "regex", "ignore_case", "metadata"}
        if unknown:
            raise InvalidArgument(f"{where}.{sorted(unknown)[0]}", "unknown key")
        rule = rules_pb2.Rule(name=str(entry.get("name", "")), label=str(entry.get("label", "")))
        matchers = [k for k in ("keywords", "regex", "metadata") if k in entry]
        if len(matchers) != 1:
            raise InvalidArgument(where, "needs exactly one of keywords, regex, metadata")
        if "keywords" in entry:
            terms = entry["keywords"]
            if not isinstance(terms, list) or not all(isinstance(t, str | int | float) for t in terms):
                raise InvalidArgument(f"{where}.keywords", "a list of words or phrases")
            rule.keywords.terms.extend(str(t) for t in terms)
        elif "regex" in entry:
            if not isinstance(entry["regex"], str):
                raise InvalidArgument(f"{where}.regex", "a string")
            rule.regex.pattern = entry["regex"]
            rule.regex.ignore_case = bool(entry.get("ignore_case", False))
        else:
            meta = entry["metadata"]
            if not isinstance(meta, dict) or not isinstance(meta.get("values"), list):
                raise InvalidArgument(f"{where}.metadata", "a mapping {field: F, values: [...]}")
            rule.metadata.field = str(meta.get("field", ""))
            rule.metadata.values.extend(str(v) for v in meta["values"])
        out.append(rule)
    names = [r.name for r in out]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InvalidArgument("rules", f"the name {duplicate!r} is used twice")
    return out


def describe_matcher(rule: rules_pb2.Rule) -> str:
    """A one-line human description of what `rule` looks for."""
    kind = rule.WhichOneof("matcher")
    if kind == "keywords":
        return "keywords: " + ", ".join(rule.keywords.terms)
    if kind == "regex":
        return f"regex: {rule.regex.pattern}" + (" (ignore case)" if rule.regex.ignore_case else "")
    if kind == "metadata":
        return f"metadata: {rule.metadata.field} in {', '.join(rule.metadata.values)}"
    return "nothing"
