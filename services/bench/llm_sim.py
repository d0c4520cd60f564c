"""A simulated LLM endpoint: a small OpenAI-compatible Chat Completions server
(`POST /v1/chat/completions`) that the bench starts for `--llm-sim-accuracy P`, and that the
tests use with scripted answers.

Like the bench's simulated people it is part of the simulation harness, not of the system under
test: the LLM source only sees its HTTP answers. `SimulatedLlm` knows the dataset's hidden
labels (by the item's text, the user message of the request) and answers the right label with
probability `accuracy`, else a label drawn uniformly from the request's other labels (the
`json_schema` enum), as `{"label": ...}` in the first choice's `content`, with token counts in
`usage` (about four characters a token). The draw is seeded by the item's text, so an item gets
the same answer on a retry and across runs with the same seed; a text it does not know gets a
uniform guess.

`ChatServer` serves any such handler (Starlette on uvicorn, in a daemon thread) on a free or
given port of 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


def completion(content: str, prompt_tokens: int = 50, completion_tokens: int = 5) -> JSONResponse:
    """A Chat Completions response whose first choice says `content`."""
    return JSONResponse(
        {
            "id": "labelloop-sim",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class SimulatedLlm:
    """Answers right with probability `accuracy` (see the module doc); counts what it was asked."""

    def __init__(self, truth: Mapping[str, str], accuracy: float, seed: int = 0) -> None:
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
        self.truth = {_digest(text): label for text, label in truth.items()}
        self.accuracy = accuracy
        self.seed = seed
        self.asked = 0
        self.right = 0
        self._lock = threading.Lock()

    def answer(self, labels: Sequence[str], text: str) -> str:
        """The label it answers for `text` among `labels`."""
        key = _digest(text)
        draw = hashlib.blake2b(f"{self.seed}".encode() + key, digest_size=16).digest()
        u = int.from_bytes(draw[:8], "big") / 2**64
        pick = int.from_bytes(draw[8:], "big")
        true = self.truth.get(key)
        if true is None or true not in labels:
            answer = labels[pick % len(labels)]
        elif u < self.accuracy:
            answer = true
        else:
            wrong = [label for label in labels if label != true]
            answer = wrong[pick % len(wrong)] if wrong else true
        with self._lock:
            self.asked += 1
            self.right += answer == true
        return answer

    async def handle(self, request: Request) -> Response:
        """The Chat Completions endpoint: 400 with a JSON error for a request it cannot read."""
        try:
            body = await request.json()
            text = next(m["content"] for m in body["messages"] if m["role"] == "user")
            schema = body["response_format"]["json_schema"]["schema"]
            labels = list(schema["properties"]["label"]["enum"])
            if not labels or not isinstance(text, str):
                raise ValueError("no labels or no text")
        except (ValueError, KeyError, TypeError, StopIteration) as exc:
            message = f"not a labeling request: {type(exc).__name__}"
            return JSONResponse({"error": {"message": message}}, status_code=400)
        label = self.answer(labels, text)
        prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4 + 1
        return completion(json.dumps({"label": label}), prompt, 6)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChatServer:
    """Serves `handler` at `{url}/chat/completions`; a context manager (start, then stop)."""

    def __init__(self, handler: Handler, port: int | None = None) -> None:
        self.port = port or free_port()
        app = Starlette(routes=[Route("/v1/chat/completions", handler, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="chat-server", daemon=True)

    @property
    def url(self) -> str:
        """The base URL (what `LABELLOOP_LLM_BASE_URL` takes)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 20.0) -> ChatServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the chat server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
