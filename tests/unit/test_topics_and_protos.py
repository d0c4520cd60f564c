"""Topics are defined once; generated code matches proto/."""

from labelloop.core import protogen, topics
from labelloop.v1 import events_pb2


def test_every_topic_name_is_prefixed_and_unique() -> None:
    names = [t.name("acme") for t in topics.ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert all(n.startswith("acme.") for n in names)
    assert topics.LABELS.config["cleanup.policy"] == "compact"


def test_decode_round_trips_the_message_type() -> None:
    event = events_pb2.ItemIngested(channel="grpc")
    event.item.item_id = "x1"
    decoded = topics.ITEMS.decode(event.SerializeToString())
    assert decoded == event


def test_generated_code_is_not_stale() -> None:
    assert protogen.main(["--check"]) == 0, "services/v1 is stale: run `make proto`"
