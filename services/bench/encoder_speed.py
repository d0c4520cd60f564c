"""Encoder serving speed and accuracy per cost: the numbers behind the encoder family's settings.

Two measurements, both on 20 Newsgroups posts and on tweet-length texts (the first words of the
same posts, up to :data:`TWEET_CHARS` characters, about 40 tokens: no tweet stream ships with
the project):

- :func:`accuracy_per_cost` (in process, no Triton): for each encoder variant (FP32, INT8) and
  token cut (128, 256), texts per second through :class:`SentenceEncoder` with the serving batch
  plan (length-sorted, :data:`encoder_runtime.SERVING_BATCH_SIZE` texts and
  :data:`encoder_runtime.SERVING_BATCH_TOKENS` padded tokens per run), and what a
  logistic-regression head on those embeddings achieves on held-out posts: accuracy and the
  coverage at the target precision (the share it could auto-label), which is what decides.
- :func:`serving_throughput` (Triton): the shared encoder model (``labelloop-encoder``, family
  ``minilm-encoder``) written to the model repository and loaded, then texts sent as the
  inference service's cascade sends them (requests of ``request_size`` texts, all in flight).

For ``make bench``: :func:`encoder_speed_section` runs the serving measurement against a running
stack and returns the dict to put under ``"encoder_speed"`` in the bench JSON;
:func:`table_line` formats it as one line under the bench table. Never in timed tests.

CLI: ``python -m labelloop.bench.encoder_speed accuracy [--n N]`` prints the accuracy-per-cost
table; ``python -m labelloop.bench.encoder_speed serve [--triton URL --repo DIR]`` prints the
serving section as JSON, against a running Triton or (without ``--triton``) a private one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.core import encoder_runtime

__all__ = [
    "accuracy_per_cost",
    "coverage_at",
    "encoder_speed_section",
    "group_cpu_seconds",
    "serving_throughput",
    "standalone_section",
    "table_line",
    "tweet_length",
]

TWEET_CHARS = 200
"""Characters kept of a post to make a tweet-length text (cut at a word boundary)."""
TARGETS = {"tweets": 200.0, "20newsgroups": 60.0}
"""Issue 10's serving targets on the 2-core development machine, items/s."""


def tweet_length(text: str, chars: int = TWEET_CHARS) -> str:
    """The first words of ``text``, at most ``chars`` characters (tweet-sized)."""
    if len(text) <= chars:
        return text
    cut = text[:chars]
    space = cut.rfind(" ")
    return cut[:space] if space > chars // 2 else cut


def coverage_at(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The largest share of items, taken most confident first, whose precision is >= ``target``
    (point estimate on these items; 0 when not even the most confident one is right)."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    return float((ok[-1] + 1) / len(order)) if len(ok) else 0.0


def _posts(n: int) -> tuple[list[str], list[str]]:
    from labelloop.datasets import load

    records = load("20newsgroups", limit=n)
    return [r["text"] for r in records], [r["label"] for r in records]


def _timed_encode(
    encoder: encoder_runtime.SentenceEncoder, texts: Sequence[str]
) -> tuple[np.ndarray, float, float]:
    """Embeddings, items per wall second, and items per CPU second of this process (all threads:
    on a machine shared with other work, the CPU rate times the cores is what an idle one gets)."""
    started, cpu = time.perf_counter(), time.process_time()
    out = encoder.encode(texts)
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return out, len(texts) / wall, len(texts) / max(used, 1e-9)


def accuracy_per_cost(
    n: int = 1200,
    train_fraction: float = 0.5,
    variants: Sequence[str] = ("fp32", "int8"),
    cuts: Sequence[int] = (128, 256),
    target: float = 0.95,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """One row per (variant, cut): items/s on posts and tweets, head accuracy and coverage at
    ``target`` on the held-out part of ``n`` posts (the first ``train_fraction`` trains it)."""
    from sklearn.linear_model import LogisticRegression

    from labelloop.retraining.encoder import encoder_dir

    directory = encoder_dir()
    manifest = encoder_runtime.read_manifest(directory)
    posts, labels = _posts(n)
    tweets = [tweet_length(p) for p in posts]
    split = int(n * train_fraction)
    rows = []
    for variant in variants:
        for cut in cuts:
            encoder = encoder_runtime.SentenceEncoder(
                directory / manifest["models"][variant]["file"],
                directory / manifest["tokenizer"]["file"],
                max_seq_length=cut,
                batch_size=encoder_runtime.SERVING_BATCH_SIZE,
                batch_tokens=encoder_runtime.SERVING_BATCH_TOKENS,
                threads=threads,
            )
            encoder.encode(tweets[:32])  # warm up
            embedded, posts_per_s, posts_per_cpu_s = _timed_encode(encoder, posts)
            _, tweets_per_s, tweets_per_cpu_s = _timed_encode(encoder, tweets[: min(len(tweets), 800)])
            fit_started = time.perf_counter()
            head = LogisticRegression(C=10.0, max_iter=2000).fit(embedded[:split], labels[:split])
            head_fit_s = time.perf_counter() - fit_started
            probs = head.predict_proba(embedded[split:])
            predicted = head.classes_[probs.argmax(axis=1)]
            correct = predicted == np.asarray(labels[split:])
            rows.append(
                {
                    "variant": variant,
                    "max_seq_length": cut,
                    "posts_per_s": round(posts_per_s, 1),
                    "posts_per_cpu_s": round(posts_per_cpu_s, 1),
                    "tweets_per_s": round(tweets_per_s, 1),
                    "tweets_per_cpu_s": round(tweets_per_cpu_s, 1),
                    "accuracy": round(float(correct.mean()), 4),
                    f"coverage_at_{target}": round(coverage_at(probs.max(axis=1), correct, target), 4),
                    "head_fit_s": round(head_fit_s, 2),
                    "n_train": split,
                    "n_test": n - split,
                }
            )
    return rows


def serving_throughput(
    triton_grpc_url: str,
    repo: Path | str,
    texts: Sequence[str],
    request_size: int = 64,
    model_name: str | None = None,
    timeout_s: float = 600.0,
    cpu_seconds: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Serve the shared encoder model from ``repo`` (written and loaded when not yet served) and
    send ``texts`` to it in requests of ``request_size``, all in flight at once. Returns
    ``{"items", "seconds", "items_per_s"}`` and, given ``cpu_seconds`` (the CPU time Triton has
    used so far), ``items_per_cpu_s``; raises RuntimeError when a request fails."""
    import tritonclient.grpc as grpcclient

    from labelloop.retraining.encoder import ensure_encoder_model

    name = ensure_encoder_model(Path(repo), triton_grpc_url, model_name)
    client = grpcclient.InferenceServerClient(triton_grpc_url)
    chunks = [list(texts[i : i + request_size]) for i in range(0, len(texts), request_size)]
    done = threading.Semaphore(0)
    errors: list[str] = []
    rows = [0]

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            rows[0] += result.as_numpy("EMBEDDING").shape[0]
        done.release()

    try:
        warm = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        warm.set_data_from_numpy(np.array([[b"warm up"]], dtype=np.object_))
        client.infer(name, [warm], client_timeout=timeout_s)
        started = time.perf_counter()
        cpu_started = cpu_seconds() if cpu_seconds else 0.0
        for chunk in chunks:
            tensor = grpcclient.InferInput("TEXT", [len(chunk), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in chunk], dtype=np.object_))
            client.async_infer(name, [tensor], callback=callback, client_timeout=timeout_s)
        for _ in chunks:
            if not done.acquire(timeout=timeout_s):
                raise RuntimeError(f"encoder model {name}: no answer in {timeout_s:.0f}s")
        seconds = time.perf_counter() - started
        cpu_used = cpu_seconds() - cpu_started if cpu_seconds else 0.0
    finally:
        client.close()
    if errors or rows[0] != len(texts):
        raise RuntimeError(
            f"encoder model {name}: {len(errors)} failed requests, {rows[0]} rows: {errors[:1]}"
        )
    out: dict[str, Any] = {
        "items": len(texts),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(texts) / seconds, 1),
    }
    if cpu_seconds:
        out["items_per_cpu_s"] = round(len(texts) / max(cpu_used, 1e-9), 1)
    return out


def encoder_speed_section(
    triton_grpc_url: str,
    repo: Path | str,
    n_posts: int = 300,
    n_tweets: int = 1000,
    cpu_seconds: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The bench JSON's ``encoder_speed`` section: serving items/s through Triton on tweet-length
    texts and on 20 Newsgroups posts (and per CPU second of Triton, given ``cpu_seconds``), the
    serving configuration, and the targets."""
    from labelloop.retraining.encoder import SERVING

    posts, _ = _posts(max(n_posts, n_tweets))
    tweets = [tweet_length(p) for p in posts[:n_tweets]]
    return {
        "config": {
            "variant": SERVING.variant,
            "max_seq_length": SERVING.max_seq_length,
            "batch_size": SERVING.batch_size,
            "batch_tokens": SERVING.batch_tokens,
        },
        "tweets": serving_throughput(triton_grpc_url, repo, tweets, cpu_seconds=cpu_seconds),
        "20newsgroups": serving_throughput(triton_grpc_url, repo, posts[:n_posts], cpu_seconds=cpu_seconds),
        "targets_items_per_s": dict(TARGETS),
    }


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid`` (Triton
    and its python-backend stubs)."""
    from labelloop.stack.process import group_members

    ticks = 0
    for pid in group_members(pgid):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 32767)  # below the ephemeral range
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


def standalone_section(n_posts: int = 300, n_tweets: int = 1000) -> dict[str, Any]:
    """:func:`encoder_speed_section` against a private Triton started for it (free ports, a
    temporary model repository) and stopped afterwards: no running stack needed."""
    import tempfile

    from labelloop.stack import StackSettings
    from labelloop.stack.triton_server import TritonServer

    with tempfile.TemporaryDirectory(prefix="labelloop-encoder-speed-") as tmp:
        settings = StackSettings(
            stack_dir=tmp,
            triton_http_port=_free_port(),
            triton_grpc_port=_free_port(),
            triton_metrics_port=_free_port(),
        )
        repo = Path(tmp) / "model-repository"
        repo.mkdir()
        server = TritonServer(settings, Path(tmp), repo)
        started = server.process.start()
        try:
            if not server.is_ready():
                raise RuntimeError(f"triton did not start: {started}")
            pid = server.process.running_pid()
            return encoder_speed_section(
                server.grpc_url, repo, n_posts, n_tweets, (lambda: group_cpu_seconds(pid)) if pid else None
            )
        finally:
            server.process.stop()


def table_line(section: dict[str, Any], cores: int = 2) -> str:
    """One line for the bench table: encoder items/s against the targets and, when measured, per
    CPU second of Triton times ``cores`` (what an otherwise idle machine of that many cores gets;
    the wall-clock rate counts whatever else shares the machine)."""

    def rate(name: str) -> str:
        part = section[name]
        text = f"{part['items_per_s']}"
        if "items_per_cpu_s" in part:
            text += f" ({part['items_per_cpu_s'] * cores:.0f} on {cores} idle cores)"
        return text

    def best(name: str) -> float:
        part = section[name]
        return float(max(part["items_per_s"], part.get("items_per_cpu_s", 0.0) * cores))

    config = section["config"]
    met = best("tweets") >= TARGETS["tweets"] and best("20newsgroups") >= TARGETS["20newsgroups"]
    return (
        f"encoder serving (Triton, {config['variant']}, {config['max_seq_length']} tokens), items/s: "
        f"{rate('tweets')} tweet-length (target {TARGETS['tweets']:.0f}), "
        f"{rate('20newsgroups')} 20 Newsgroups posts (target {TARGETS['20newsgroups']:.0f}): "
        f"{'met' if met else 'missed'}{' by CPU time' if met and 'items_per_cpu_s' in section['tweets'] else ''}"
    )


def _markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelloop.bench.encoder_speed")
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accuracy", help="accuracy per cost, in process")
    acc.add_argument("--n", type=int, default=1200)
    acc.add_argument("--threads", type=int, default=None)
    serve = sub.add_parser("serve", help="serving items/s through Triton (a private one without --triton)")
    serve.add_argument(
        "--triton", help="gRPC address of a running Triton (with --repo, its model repository)"
    )
    serve.add_argument("--repo")
    serve.add_argument("--posts", type=int, default=300)
    serve.add_argument("--tweets", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.command == "accuracy":
        print(_markdown(accuracy_per_cost(args.n, threads=args.threads)))
    else:
        section = (
            encoder_speed_section(args.triton, args.repo, args.posts, args.tweets)
            if args.triton
            else standalone_section(args.posts, args.tweets)
        )
        print(json.dumps(section, indent=2))
        print(table_line(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
