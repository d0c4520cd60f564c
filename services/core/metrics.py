"""The Prometheus metrics every Labelloop service may export: one catalogue, one place.

Each service imports the metrics it updates from here; `labelloop.core.health` serves them on
`/metrics` of the port `LABELLOOP_METRICS_PORT`. Dashboards and alert rules
(deploy/grafana, deploy/prometheus) use only these names and Triton's own `nv_*` metrics;
an integration test scrapes the running services to check that every name they use exists.

Label conventions: `service` is the service name (ingest, inference, routing, human_tasks,
retraining); `project` is a project id; `topic` is the topic's base name (without prefix).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TRAINING_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)

# --- every service (updated by labelloop.core plumbing) -------------------------------------
BUILD_INFO = Info("labelloop_build", "Labelloop version and the service this process runs.")
MESSAGES_CONSUMED = Counter("labelloop_messages_consumed", "Kafka messages consumed.", ["service", "topic"])
MESSAGES_PRODUCED = Counter("labelloop_messages_produced", "Kafka messages produced.", ["service", "topic"])
DEAD_LETTERS = Counter(
    "labelloop_dead_letters",
    "Messages sent to the dead-letter topic, by the topic they came from and the error.",
    ["service", "topic", "error_type"],
)
CONSUMER_LAG = Gauge(
    "labelloop_consumer_lag",
    "Messages not yet consumed by this service's consumer group (end offset - position).",
    ["service", "topic", "partition"],
)
BATCH_SIZE = Histogram(
    "labelloop_batch_size", "Messages handled per consumer batch.", ["service"], buckets=BATCH_BUCKETS
)
BATCH_SECONDS = Histogram(
    "labelloop_batch_seconds",
    "Time to handle one consumer batch, from poll to commit.",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
DEPENDENCY_UP = Gauge(
    "labelloop_dependency_up", "1 when a dependency answers, else 0.", ["service", "dependency"]
)
GRPC_REQUESTS = Counter(
    "labelloop_grpc_requests",
    "gRPC requests served, by method and status code.",
    ["service", "method", "code"],
)
GRPC_SECONDS = Histogram(
    "labelloop_grpc_request_seconds", "gRPC request latency.", ["service", "method"], buckets=LATENCY_BUCKETS
)

# --- ingest ----------------------------------------------------------------------------------
ITEMS_INGESTED = Counter("labelloop_items_ingested", "Items accepted by ingest.", ["project", "channel"])
ITEMS_REJECTED = Counter(
    "labelloop_items_rejected", "Items rejected by validation, by the invalid field.", ["project", "field"]
)
ITEMS_DUPLICATE = Counter(
    "labelloop_items_duplicate", "Submissions of an item id already accepted.", ["project"]
)

# --- inference -------------------------------------------------------------------------------
INFERENCE_REQUESTS = Counter(
    "labelloop_inference_requests", "Calls to Triton, by model and outcome (ok, error).", ["model", "outcome"]
)
INFERENCE_SECONDS = Histogram(
    "labelloop_inference_seconds", "Latency of one Triton call.", ["model"], buckets=LATENCY_BUCKETS
)
INFERENCE_BATCH_SIZE = Histogram(
    "labelloop_inference_batch_size", "Items per Triton call.", ["model"], buckets=BATCH_BUCKETS
)
PREDICTIONS = Counter(
    "labelloop_predictions", 'Predictions produced; model="none" when no model serves.', ["project", "model"]
)
CASCADE_ITEMS = Counter(
    "labelloop_cascade_items",
    'Items of cascade models by the stage that answered: "fast", or "encoder" (the fast stage was unsure).',
    ["project", "stage"],
)
RULE_VOTES = Counter(
    "labelloop_rule_votes",
    "Votes cast by a project's rules (labeling functions) on items, per rule.",
    ["project", "source"],
)
SOURCE_ACCURACY = Gauge(
    "labelloop_source_accuracy",
    "A label source's learned accuracy when it votes (the label model, from people's answers).",
    ["project", "source"],
)
LLM_CALLS = Counter(
    "labelloop_llm_calls",
    "Questions to the LLM source by outcome (answered, out_of_set, malformed, timeout, unavailable, "
    "rejected, over_budget).",
    ["project", "outcome"],
)
LLM_TOKENS = Counter(
    "labelloop_llm_tokens", "Tokens the LLM endpoint reported, by kind.", ["project", "kind"]
)

# --- routing ---------------------------------------------------------------------------------
ROUTING_DECISIONS = Counter(
    "labelloop_routing_decisions",
    "Routing decisions per prediction: auto (auto-labeled) or human; audit counts audit tasks, "
    "auto_after_vote the waiting tasks a late vote (the LLM's) auto-labels (withdrawn if untouched), and "
    "exploration the human ones drawn above the threshold (also counted as human).",
    ["project", "decision"],
)
THRESHOLD = Gauge(
    "labelloop_threshold", "Current auto-accept threshold per project (>1 admits nothing).", ["project"]
)

# --- human tasks -----------------------------------------------------------------------------
HUMAN_QUEUE_DEPTH = Gauge("labelloop_human_queue_depth", "Human tasks waiting (not leased).", ["project"])
HUMAN_QUEUE_OLDEST_AGE = Gauge(
    "labelloop_human_queue_oldest_age_seconds", "Age of the oldest waiting human task.", ["project"]
)
HUMAN_LEASES_ACTIVE = Gauge("labelloop_human_leases_active", "Human tasks currently leased.", ["project"])
LEASES_EXPIRED = Counter("labelloop_leases_expired", "Leases that expired and were re-queued.", ["project"])
TASKS_WITHDRAWN = Counter(
    "labelloop_tasks_withdrawn",
    "Waiting tasks withdrawn because a newer model auto-labeled them: sent to people, never answered. "
    "Against the annotations, how far the labels a new model is calibrated on are from a sample "
    "(retraining/calibration.py, known approximations).",
    ["project"],
)
ANNOTATIONS = Counter("labelloop_annotations", "Annotations submitted.", ["project"])
ANNOTATOR_AGREEMENT = Gauge(
    "labelloop_annotator_agreement",
    "Share of an annotator's answers equal to the consensus (kind=consensus), or of their labels "
    "that a review upheld (kind=review); known projects only.",
    ["project", "annotator", "kind"],
)

# --- labels (routing: source=model; human_tasks: source=human) -------------------------------
LABELS_FINALIZED = Counter(
    "labelloop_labels_finalized", "Final labels produced, by source (model, human).", ["project", "source"]
)
FINAL_LABELS_DROPPED = Counter(
    "labelloop_final_labels_dropped",
    "Final-label decisions dropped by the fence: the item already had another final label (conflict) "
    "or was with people (people).",
    ["project", "source", "reason"],
)

# --- retraining ------------------------------------------------------------------------------
TRAININGS = Counter(
    "labelloop_trainings",
    "Training runs, by family and outcome (ok, failed).",
    ["project", "family", "outcome"],
)
TRAINING_SECONDS = Histogram(
    "labelloop_training_seconds",
    "Duration of a training run.",
    ["project", "family"],
    buckets=TRAINING_BUCKETS,
)
GATE_DECISIONS = Counter(
    "labelloop_gate_decisions", "Promotion gate decisions (promoted, rejected).", ["project", "decision"]
)
SERVING_MODEL_VERSION = Gauge(
    "labelloop_serving_model_version", "Model version serving in Triton per project (0: none).", ["project"]
)
AUDITED_PRECISION = Gauge(
    "labelloop_audited_precision", "Measured precision of audited auto-labels per project.", ["project"]
)
AUDITS = Counter(
    "labelloop_audits",
    "Audited auto-labels, by whether people agreed (agree, disagree).",
    ["project", "outcome"],
)
LABEL_ISSUES = Counter(
    "labelloop_label_issues",
    "Labels the checks before a training flagged as likely wrong (kind=human, auto), and the "
    "review tasks sent for the human ones (kind=reviews_sent).",
    ["project", "kind"],
)
TARGET_PRECISION = Gauge(
    "labelloop_target_precision",
    "The precision a project's auto-labels must reach (its spec), for comparison with the audits.",
    ["project"],
)

# --- annotator-web ---------------------------------------------------------------------------
WEB_REQUESTS = Counter(
    "labelloop_web_requests",
    "HTTP requests served by annotator-web, by route and status code.",
    ["route", "code"],
)
WEB_REQUEST_SECONDS = Histogram(
    "labelloop_web_request_seconds",
    "annotator-web HTTP request latency (including its gRPC calls).",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
WEB_ANSWERS = Counter(
    "labelloop_web_answers",
    "Answers sent through annotator-web, by project and outcome (ok, duplicate, lease_lost, error).",
    ["project", "outcome"],
)
