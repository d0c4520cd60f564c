"""The label model's state in Redis, learned online: the one writer is human-tasks, which calls
`observe` when people's answer on an item is decided (a labeling task's consensus or an
audit's), with the votes the item's prediction carried; readers (`load`) rebuild a
`labelloop.core.label_model.LabelModel` from it.

Keys: `<prefix>:label-model:<project>` is a hash of counts, field `c\\x1f<label>` per human
label and `s\\x1f<source>\\x1f<label>\\x1f<vote>` per (source, human label, vote) with an empty
vote for an abstention; `<prefix>:label-model:<project>:seen` is the set of item ids already
counted. One Lua script checks the set and adds the counts atomically, so an answer delivered
twice (at-least-once) counts once. Sources that vote apart from the prediction (the LLM source)
stash their vote per item (`<prefix>:late-votes:<project>:<item>`, a hash source -> label, kept
`LATE_VOTE_TTL_S`) with `stash_vote`; `observe_prediction` counts them with the prediction's. The same counts can be rebuilt from the topics
(`labelloop.core.label_model.rebuild`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import redis

from labelloop.core import metrics
from labelloop.core.label_model import LabelModel, votes_of
from labelloop.core.redis_store import Keys, unavailable
from labelloop.core.rules import RuleStore, source_name
from labelloop.v1 import events_pb2

SEP = "\x1f"
LATE_VOTE_TTL_S = 14 * 24 * 3600

_OBSERVE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 2, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
return 1
"""


class LabelModelStore:
    """Counts of each project's label model in Redis (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, key_prefix: str, rules: RuleStore | None = None, cache_s: float = 5.0
    ) -> None:
        self.client = client
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, LabelModel]] = {}
        self.keys = Keys(key_prefix)
        self.rules = rules if rules is not None else RuleStore(client, key_prefix)
        self._observe = client.register_script(_OBSERVE)

    def _counts_key(self, project_id: str) -> str:
        return self.keys("label-model", project_id)

    def observe(
        self,
        project_id: str,
        item_id: str,
        votes: Mapping[str, str],
        human_label: str,
        abstained: Sequence[str],
    ) -> bool:
        """Count one decided item once (False when it was counted before)."""
        fields = [f"c{SEP}{human_label}"]
        fields += [f"s{SEP}{source}{SEP}{human_label}{SEP}{vote}" for source, vote in votes.items()]
        fields += [f"s{SEP}{source}{SEP}{human_label}{SEP}" for source in abstained if source not in votes]
        key = self._counts_key(project_id)
        try:
            return bool(self._observe(keys=[key, key + ":seen"], args=[item_id, *fields]))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def stash_vote(self, project_id: str, item_id: str, source: str, label: str) -> None:
        """Keep a vote cast apart from the item's prediction until people decide the item."""
        key = self.keys("late-votes", project_id, item_id)
        try:
            with self.client.pipeline() as pipe:
                pipe.hset(key, source, label)
                pipe.expire(key, LATE_VOTE_TTL_S)
                pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc

    def late_votes(self, project_id: str, item_id: str) -> dict[str, str]:
        """The votes stashed for an item (source -> label)."""
        try:
            raw = self.client.hgetall(self.keys("late-votes", project_id, item_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return {_text(k): _text(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def late_votes_many(self, project_id: str, item_ids: Sequence[str]) -> list[dict[str, str]]:
        """`late_votes` of many items in one round trip, in the order of `item_ids`."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for item_id in item_ids:
                    pipe.hgetall(self.keys("late-votes", project_id, item_id))
                raw = pipe.execute()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return [{_text(k): _text(v) for k, v in row.items()} for row in raw]

    def observe_prediction(
        self, prediction: events_pb2.Prediction, human_label: str, labels: Sequence[str]
    ) -> bool:
        """Count people's `human_label` for the item of `prediction` against the votes it carried
        (the model's top label, each rule's vote) and the project's other rules (abstentions);
        then set each source's accuracy gauge. `labels` are the project's. False when the item
        was counted before."""
        item = prediction.ingested.item
        scored = len(prediction.scores) == len(labels)
        probabilities = [score.probability for score in prediction.scores] if scored else None
        cast = [(v.source, v.label) for v in prediction.votes]
        cast += sorted(self.late_votes(item.project_id, item.item_id).items())
        votes = votes_of(cast, probabilities, labels)
        rules = [source_name(name) for name in self.rules.compiled(item.project_id).names]
        counted = self.observe(item.project_id, item.item_id, votes, human_label, rules)
        if counted:
            model = self.load(item.project_id, labels)
            for source in votes.keys() | set(rules):
                metrics.SOURCE_ACCURACY.labels(item.project_id, source).set(model.accuracy(source))
        return counted

    def cached(self, project_id: str, labels: Sequence[str]) -> LabelModel:
        """`load`, re-read at most every `cache_s` seconds (routing's read path)."""
        now = time.monotonic()
        hit = self._cache.get(project_id)
        if hit and now - hit[0] < self.cache_s and list(hit[1].labels) == list(labels):
            return hit[1]
        model = self.load(project_id, labels)
        self._cache[project_id] = (now, model)
        return model

    def load(self, project_id: str, labels: Sequence[str]) -> LabelModel:
        """The project's label model over `labels` (counts of labels outside them are ignored)."""
        try:
            raw = self.client.hgetall(self._counts_key(project_id))
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        model = LabelModel(labels)
        assert model.class_counts is not None
        k = len(labels)
        for field_raw, value_raw in raw.items():  # type: ignore[union-attr]
            parts = _text(field_raw).split(SEP)
            count = int(value_raw)
            if parts[0] == "c" and len(parts) == 2 and parts[1] in model.index:
                model.class_counts[model.index[parts[1]]] += count
            elif parts[0] == "s" and len(parts) == 4 and parts[2] in model.index:
                source, truth, vote = parts[1], model.index[parts[2]], parts[3]
                column = k if vote == "" else model.index.get(vote)
                if column is None:
                    continue
                matrix = model.counts.setdefault(source, np.zeros((k, k + 1)))
                matrix[truth, column] += count
        return model


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
