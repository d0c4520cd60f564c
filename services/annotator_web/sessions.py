"""The session cookie: who is logged in, sealed so the browser can neither read nor forge it.

After a login, the app keeps the person's token (it calls the gRPC APIs with it, so revoking
the token ends the session at the next call) and the identity WhoAmI returned (name, role,
projects). The cookie is that JSON encrypted and authenticated with Fernet (AES-128-CBC +
HMAC-SHA256, a timestamp checked against `max_age_s`), under a key derived from
`LABELLOOP_SESSION_SECRET`. It is HttpOnly and SameSite=Strict (Secure with
`LABELLOOP_SECURE_COOKIE`), so page scripts never see it and other sites never send it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "labelloop_session"


@dataclass(frozen=True)
class Session:
    """A logged-in person."""

    token: str
    name: str
    role: str  # "annotator" or "admin"
    projects: tuple[str, ...]  # empty: every project (admins)

    def may_use(self, project_id: str) -> bool:
        """True when the token is scoped to `project_id` (admins: every project)."""
        return (self.role == "admin" and not self.projects) or project_id in self.projects

    def public(self) -> dict[str, object]:
        """What the page may know: never the token."""
        return {"name": self.name, "role": self.role, "projects": list(self.projects)}


class SessionCodec:
    """Seals a Session into a cookie value and opens it again."""

    def __init__(self, secret: str, max_age_s: int) -> None:
        secret = secret or secrets.token_urlsafe(32)
        key = hashlib.sha256(b"labelloop-annotator-web-session\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self.max_age_s = max_age_s

    def seal(self, session: Session) -> str:
        """The cookie value for `session`."""
        return self._fernet.encrypt(json.dumps(asdict(session)).encode()).decode()

    def open(self, cookie: str | None) -> Session | None:
        """The session in `cookie`; None when absent, forged, from another key or too old."""
        if not cookie:
            return None
        try:
            raw = json.loads(self._fernet.decrypt(cookie.encode(), ttl=self.max_age_s))
            return Session(raw["token"], raw["name"], raw["role"], tuple(raw["projects"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
