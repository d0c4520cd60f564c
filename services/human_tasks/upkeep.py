"""The human-tasks upkeep, a background thread of the service: every `reap_interval_s`, for each
project, re-queue expired leases, publish answers whose events were never produced, and update
the queue gauges.

A failure is contained to the project and the round it happens in: it is logged and the next
round tries again. Redis being down, and also errors that are not connection errors (WRONGTYPE
on a damaged key, OOM), never stop the thread, so leases keep being reaped.
"""

from __future__ import annotations

import logging
import time

from labelloop.core import metrics, stream
from labelloop.core.errors import DependencyUnavailable, FailedPrecondition
from labelloop.core.projects import ProjectStore
from labelloop.core.queues import read_stats
from labelloop.human_tasks.api import HumanTaskApi
from labelloop.human_tasks.queue import TaskQueue

log = logging.getLogger(__name__)


def upkeep_once(queue: TaskQueue, projects: ProjectStore, api: HumanTaskApi, republish_after_s: float) -> int:
    """One round over every project; returns how many projects failed (logged)."""
    try:
        listed = projects.list()
    except Exception as exc:
        log.warning("queue upkeep skipped: %s", exc)
        return 1
    failed = 0
    for project in listed:
        pid = project.spec.project_id
        try:
            expired = queue.reap(pid)
            if expired:
                metrics.LEASES_EXPIRED.labels(pid).inc(expired)
            republish(queue, api, pid, republish_after_s)
            stats = read_stats(queue.client, queue.keys, pid)
            metrics.HUMAN_QUEUE_DEPTH.labels(pid).set(stats.queued)
            metrics.HUMAN_LEASES_ACTIVE.labels(pid).set(stats.leased)
            metrics.HUMAN_QUEUE_OLDEST_AGE.labels(pid).set(stats.oldest_age_s)
        except DependencyUnavailable as exc:
            failed += 1
            log.warning("queue upkeep of %s skipped: %s", pid, exc)
        except Exception:
            failed += 1
            log.exception("queue upkeep of %s failed; trying again next round", pid)
    return failed


def republish(queue: TaskQueue, api: HumanTaskApi, project_id: str, after_s: float) -> int:
    """Publish the events of answers recorded more than `after_s` ago and never produced (their
    client gave up, or the service died between Redis and Kafka). Returns how many."""
    done = 0
    for lease_id in queue.unproduced(project_id, time.time() - after_s):
        try:
            api.republish(lease_id)
        except FailedPrecondition:  # the lease record expired: nothing left to publish
            queue.forget_unproduced(project_id, lease_id)
            continue
        done += 1
    if done:
        log.info("%s: published the events of %d answers whose produce had failed", project_id, done)
    return done


def keep_queues(
    queue: TaskQueue,
    projects: ProjectStore,
    api: HumanTaskApi,
    stop: stream.StopFlag,
    interval_s: float,
    republish_after_s: float,
) -> None:
    """Until stopped: `upkeep_once` every `interval_s`."""
    while not stop.wait(interval_s):
        upkeep_once(queue, projects, api, republish_after_s)
