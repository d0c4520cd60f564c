"""The RuleService gRPC API (proto/labelloop/v1/rules.proto), served by the ingest process, which
owns projects: rules are checked against the project's labels and stored by
`labelloop.core.rules.RuleStore`. Adding and removing are admin-only; the project's clients and
annotators may list its rules (`labelloop.core.access`)."""

from __future__ import annotations

import grpc

from labelloop.core.errors import InvalidArgument
from labelloop.core.projects import ProjectStore
from labelloop.core.rules import RuleStore
from labelloop.v1 import rules_pb2, rules_pb2_grpc


class RuleApi(rules_pb2_grpc.RuleServiceServicer):
    """AddRule, ListRules, RemoveRule."""

    def __init__(self, projects: ProjectStore, rules: RuleStore) -> None:
        self.projects = projects
        self.rules = rules

    def _project_labels(self, project_id: str) -> list[str]:
        if not project_id:
            raise InvalidArgument("project_id", "empty")
        return list(self.projects.get(project_id).spec.labels)  # NotFound when unknown

    def AddRule(self, request: rules_pb2.AddRuleRequest, context: grpc.ServicerContext) -> rules_pb2.RuleSet:
        labels = self._project_labels(request.project_id)
        return self.rules.add(request.project_id, request.rule, labels)

    def ListRules(
        self, request: rules_pb2.ListRulesRequest, context: grpc.ServicerContext
    ) -> rules_pb2.RuleSet:
        self._project_labels(request.project_id)
        return self.rules.get(request.project_id)

    def RemoveRule(
        self, request: rules_pb2.RemoveRuleRequest, context: grpc.ServicerContext
    ) -> rules_pb2.RuleSet:
        self._project_labels(request.project_id)
        if not request.name:
            raise InvalidArgument("name", "empty")
        return self.rules.remove(request.project_id, request.name)
