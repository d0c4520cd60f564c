"""Rules (labeling functions): validation with errors naming the field, RE2 patterns that cannot
backtrack, matching, the rule file format, Snorkel-style stats, and votes that ride on the
encoded predictions."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labelloop.core.errors import InvalidArgument
from labelloop.core.rules import (
    CompiledRules,
    compile_pattern,
    parse_rule_file,
    rule_stats,
    validate_rule,
)
from labelloop.inference.prediction_wire import encode_predictions
from labelloop.v1 import common_pb2, events_pb2, rules_pb2

LABELS = ["sports", "politics", "tech"]


def keywords(name: str, label: str, *terms: str) -> rules_pb2.Rule:
    return rules_pb2.Rule(name=name, label=label, keywords=rules_pb2.KeywordMatcher(terms=terms))


def regex(name: str, label: str, pattern: str, ignore_case: bool = False) -> rules_pb2.Rule:
    return rules_pb2.Rule(
        name=name, label=label, regex=rules_pb2.RegexMatcher(pattern=pattern, ignore_case=ignore_case)
    )


def item(text: str, **metadata: str) -> common_pb2.Item:
    return common_pb2.Item(
        item_id="i", project_id="p", content=common_pb2.Content(text=text), metadata=metadata
    )


def rules(*rs: rules_pb2.Rule, version: int = 3) -> CompiledRules:
    return CompiledRules(
        rules_pb2.RuleSet(project_id="p", version=version, rules=[validate_rule(r, LABELS) for r in rs])
    )


def test_bad_rules_are_refused_naming_the_field() -> None:
    cases = [
        (keywords("bad name!", "sports", "x"), "rule.name"),
        (keywords("k", "cooking", "x"), "rule.label"),
        (keywords("k", "sports", " ", ""), "rule.keywords.terms"),
        (rules_pb2.Rule(name="k", label="sports"), "rule: needs keywords"),
        (regex("r", "sports", ""), "rule.regex.pattern: empty"),
        (regex("r", "sports", "a" * 300), "over the limit"),
        (regex("r", "sports", "(unclosed"), "rule.regex.pattern: not a regular expression"),
        (regex("r", "sports", r"(a)\1"), "no backreferences"),
        (regex("r", "sports", r"(?<=a)b"), "look-around"),
        (
            rules_pb2.Rule(
                name="m", label="sports", metadata=rules_pb2.MetadataMatcher(field="src", values=[""])
            ),
            "rule.metadata.values",
        ),
    ]
    for rule, message in cases:
        with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
            validate_rule(rule, LABELS)


def test_keywords_match_whole_words_and_phrases_ignoring_case() -> None:
    compiled = rules(keywords("ball", "sports", "goal", "world  cup", "c++"))
    assert compiled.labels_of(item("What a GOAL!")) == ["sports"]
    assert compiled.labels_of(item("the World\n Cup final")) == ["sports"]
    assert compiled.labels_of(item("I code in c++ daily")) == ["sports"]
    assert compiled.labels_of(item("goalkeeper and goals")) == [None], "whole words only"
    assert compiled.labels_of(item("")) == [None]


def test_regex_and_metadata_rules_vote_or_abstain() -> None:
    compiled = rules(
        regex("elect", "politics", r"\belect(ion|ed|s)?\b", ignore_case=True),
        regex("version", "tech", r"v\d+\.\d+"),
        rules_pb2.Rule(
            name="feed",
            label="sports",
            metadata=rules_pb2.MetadataMatcher(field="feed", values=["espn", "bbc-sport"]),
        ),
    )
    assert compiled.names == ["elect", "version", "feed"]
    assert compiled.labels_of(item("Election night", feed="espn")) == ["politics", None, "sports"]
    assert compiled.labels_of(item("released V2.1")) == [None, None, None], "case-sensitive unless asked"
    assert compiled.labels_of(item("released v2.1", feed="ESPN")) == [None, "tech", None]
    votes = compiled.votes(item("elected in v1.0"))
    assert [(v.source, v.label, v.version) for v in votes] == [
        ("rule:elect", "politics", 3),
        ("rule:version", "tech", 3),
    ]


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    # (a+)+b backtracks exponentially in a backtracking engine on "aaa...c"; RE2 does not
    compiled = rules(regex("evil", "tech", r"(a+)+b"), regex("evil2", "tech", r"(\w*\s?)*x"))
    text = "a" * 20_000 + "c"
    started = time.monotonic()
    assert compiled.labels_of(item(text)) == [None, None]
    assert time.monotonic() - started < 1.0
    assert compile_pattern("(a+)+b").search("aaab")


def test_rule_file_format() -> None:
    parsed = parse_rule_file(
        """
rules:
  - name: hockey
    label: sports
    keywords: [hockey, nhl, "stanley cup"]
  - name: vote
    label: politics
    regex: '\\bvot(e|ed|ing)\\b'
    ignore_case: true
  - name: feed
    label: tech
    metadata: {field: source, values: [slashdot]}
"""
    )
    assert [r.name for r in parsed] == ["hockey", "vote", "feed"]
    assert list(parsed[0].keywords.terms) == ["hockey", "nhl", "stanley cup"]
    assert parsed[1].regex.pattern == r"\bvot(e|ed|ing)\b" and parsed[1].regex.ignore_case
    assert parsed[2].metadata.field == "source"
    for text, message in [
        ("rules: 3", "top-level `rules:` list"),
        ("rules:\n  - name: a\n    label: b\n", r"rules\[0\]: needs exactly one"),
        ("rules:\n  - name: a\n    label: b\n    keywords: x\n", r"rules\[0\].keywords"),
        ("rules:\n  - {name: a, label: b, regex: x, colour: red}\n", r"rules\[0\].colour: unknown key"),
        ("rules:\n  - {name: a, label: b, regex: x}\n  - {name: a, label: b, regex: y}\n", "used twice"),
        ("rules: [", "not valid YAML"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            parse_rule_file(text)


def test_the_built_in_example_rule_file_is_valid() -> None:
    from pathlib import Path

    import labelloop.datasets

    path = Path(labelloop.datasets.__file__).parent / "rules" / "20newsgroups.yaml"
    parsed = parse_rule_file(path.read_text())
    assert sum(len(r.keywords.terms) for r in parsed) <= 40, "the issue's budget of keywords"
    groups = [
        "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
        "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
        "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
        "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
        "talk.politics.misc", "talk.religion.misc",
    ]  # fmt: skip
    for rule in parsed:
        validate_rule(rule, groups)


def test_stats_count_coverage_overlaps_conflicts_and_accuracy() -> None:
    compiled = rules(
        keywords("ball", "sports", "ball"),
        keywords("vote", "politics", "vote"),
        keywords("team", "sports", "team"),
    )
    items = [
        (item("ball game"), "sports"),  # ball right
        (item("ball vote"), "politics"),  # ball wrong, vote right; conflict
        (item("team ball"), "sports"),  # ball + team agree: overlap, no conflict
        (item("vote now"), None),  # vote, unjudged
        (item("nothing"), "tech"),  # no rule
    ]
    stats = {s.name: s for s in rule_stats(compiled, items)}
    ball, vote, team = stats["ball"], stats["vote"], stats["team"]
    assert (ball.votes, ball.coverage, ball.overlaps, ball.conflicts) == (3, 0.6, 0.4, 0.2)
    assert (ball.judged, ball.correct, ball.accuracy) == (3, 2, pytest.approx(2 / 3))
    assert (vote.votes, vote.overlaps, vote.conflicts, vote.judged, vote.accuracy) == (2, 0.2, 0.2, 1, 1.0)
    assert (team.votes, team.overlaps, team.conflicts, team.accuracy) == (1, 0.2, 0.0, 1.0)
    assert rule_stats(rules(keywords("x", "tech", "zzz")), [(item("a"), None)])[0].accuracy is None


def test_votes_appended_to_an_encoded_prediction_parse_as_its_votes_field() -> None:
    ingested = events_pb2.ItemIngested(item=item("ball"))
    common = events_pb2.Prediction(model_name="m", model_version=2)
    (encoded,) = encode_predictions(
        [ingested.SerializeToString()], common, LABELS, np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    )
    votes = rules(keywords("ball", "sports", "ball")).votes(ingested.item)
    parsed = events_pb2.Prediction.FromString(
        encoded + events_pb2.Prediction(votes=votes).SerializeToString()
    )
    assert [(s.label, round(s.probability, 2)) for s in parsed.scores] == [
        ("sports", 0.7),
        ("politics", 0.2),
        ("tech", 0.1),
    ]
    assert [(v.source, v.label, v.version) for v in parsed.votes] == [("rule:ball", "sports", 3)]


def test_the_bench_checks_its_rule_file_before_anything_starts(tmp_path) -> None:
    from labelloop.bench.loop import BenchError, load_rules

    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - {name: ball, label: sports, keywords: [ball]}\n")
    assert [r.name for r in load_rules(good, LABELS)] == ["ball"]
    with pytest.raises(BenchError, match=r"--rules .*good.yaml: rule.label: 'sports' is not one"):
        load_rules(good, ["a", "b"])
    with pytest.raises(BenchError, match=r"--rules .*missing\.yaml"):
        load_rules(tmp_path / "missing.yaml", LABELS)
