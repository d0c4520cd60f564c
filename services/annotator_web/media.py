"""Links to an item's media that only people who may see its project can follow.

A media file is content-addressed and shared by every project that references it, so its URI says
nothing of who may see it. The app therefore hands out a link only inside a leased task (the
lease proves the person may work on that project), signed for the pair (project, URI):
``/api/projects/<project>/media?uri=<uri>&sig=<hmac>``. Following it needs a session scoped to
that project *and* a signature the app made for that pair, so a person of another project gets
403 even with the URI in hand, and a person of this project cannot reach files of other projects
by editing the URI. The HMAC-SHA256 key is derived from ``LABELLOOP_SESSION_SECRET`` (a random
key per process when unset, as the session cookie).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote, urlencode

__all__ = ["MediaLinks"]


class MediaLinks:
    """Signs and checks the media links of one app (see the module doc)."""

    def __init__(self, secret: str) -> None:
        secret = secret or secrets.token_urlsafe(32)
        self._key = hashlib.sha256(b"labelloop-annotator-web-media\0" + secret.encode()).digest()

    def _signature(self, project_id: str, uri: str) -> str:
        message = project_id.encode() + b"\0" + uri.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def link(self, project_id: str, uri: str) -> str:
        """The path (with query) the page fetches the media of ``uri`` from, for ``project_id``."""
        query = urlencode({"uri": uri, "sig": self._signature(project_id, uri)})
        return f"/api/projects/{quote(project_id, safe='')}/media?{query}"

    def valid(self, project_id: str, uri: str, signature: str) -> bool:
        """True when ``signature`` is the one :meth:`link` made for (``project_id``, ``uri``)."""
        return hmac.compare_digest(self._signature(project_id, uri), signature)
