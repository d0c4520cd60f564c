"""Identifier shapes (core/identifiers.py): full matches only, path-safe model names, label names
every store accepts; and their use where keys, paths and specs are built."""

from __future__ import annotations

import pytest

from labelloop.core import model_repository
from labelloop.core.errors import InvalidArgument
from labelloop.core.identifiers import check_label_name, check_lease_id, check_model_name, is_project_id
from labelloop.core.projects import normalize_spec
from labelloop.core.queues import QueueKeys, task_member
from labelloop.v1 import common_pb2


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", "a:b", "a/b", "", "-a", "A", "a" * 65, "abc "])
def test_project_ids_are_matched_whole(value: str) -> None:
    assert not is_project_id(value)
    with pytest.raises(InvalidArgument) as info:
        normalize_spec(common_pb2.ProjectSpec(project_id=value, labels=["a", "b"]))
    assert info.value.field == "spec.project_id"


@pytest.mark.parametrize("value", ["news", "a", "spam-2026_x", "0" * 64])
def test_good_project_ids(value: str) -> None:
    assert is_project_id(value)


@pytest.mark.parametrize("value", [".", "..", ".hidden", "a/b", "../x", "a\n", "", "x" * 129, "a b", "a\\b"])
def test_model_names_are_path_safe(value: str, tmp_path) -> None:
    with pytest.raises(InvalidArgument):
        check_model_name(value)
    with pytest.raises(InvalidArgument) as info:
        normalize_spec(common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], model_name=value or "."))
    assert info.value.field == "spec.model_name"
    with pytest.raises(ValueError, match="invalid model name"):
        model_repository.model_dir(tmp_path, value)
    with pytest.raises(ValueError, match="invalid model name"):
        model_repository.list_versions(tmp_path, value)


@pytest.mark.parametrize("value", ["news", "news.v2", "A-b_c.1"])
def test_good_model_names(value: str, tmp_path) -> None:
    assert model_repository.model_dir(tmp_path, check_model_name(value)) == tmp_path / value


@pytest.mark.parametrize(
    "value", ["a,b", "a:b", "a\n", " a", "a ", "a  b", "", "x" * 101, "a/b", "é", "a=b", "labels.x/../y"]
)
def test_label_names_fit_mlflow_keys_and_the_fence(value: str) -> None:
    with pytest.raises(InvalidArgument):
        check_label_name(value)
    with pytest.raises(InvalidArgument) as info:
        normalize_spec(common_pb2.ProjectSpec(project_id="p", labels=["ok", value]))
    assert info.value.field == "spec.labels"


@pytest.mark.parametrize("value", ["ham", "comp.sys.ibm.pc.hardware", "New York", "x-1_b", "a" * 100])
def test_good_label_names(value: str) -> None:
    assert check_label_name(value) == value


def test_lease_ids_are_what_lease_hands_out() -> None:
    assert check_lease_id("0123456789abcdef0123456789abcdef")
    for bad in ["", "nope", "0123456789abcdef0123456789abcdef\n", "x" * 32]:
        with pytest.raises(InvalidArgument):
            check_lease_id(bad)


def test_task_keys_of_no_two_items_collide() -> None:
    keys = QueueKeys("k")
    items = ["x", "x:audit", "x:who", "x:answers", "a:x", "l:x", "x:", ":x"]
    names = set()
    for item in items:
        for audit in (False, True):
            member = task_member(item, audit)
            for key in (keys.task("p", member), keys.who("p", member), keys.answers("p", member)):
                assert key not in names, f"{key} is built twice"
                names.add(key)
    assert len(names) == len(items) * 2 * 3
