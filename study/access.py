"""Who may act as which rater, and how often the admin password may be tried.

A rater is known only by a signed token ``<rater id>.<HMAC-SHA256(secret, rater id)>`` handed out in their link
(``python -m study links``) or when the app enrols them; knowing or guessing a rater id is not enough to vote as
them. The secret is ``STUDY_SECRET`` on the server, else one drawn once and kept in the study database (which is
never served). Admin logins are throttled per client address.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import defaultdict, deque

import sqlalchemy as sa

from study import db

SIG_CHARS = 22  # 132 bits of the HMAC


def server_secret(engine: sa.Engine) -> bytes:
    """STUDY_SECRET, else a random secret stored once in the database (the first writer wins)."""
    env = os.environ.get("STUDY_SECRET")
    if env:
        return env.encode()
    with engine.begin() as conn:
        value = conn.execute(sa.select(db.meta.c.value).where(db.meta.c.key == "secret")).scalar()
        if value is None:
            try:
                with conn.begin_nested():
                    conn.execute(db.meta.insert().values(key="secret", value=secrets.token_urlsafe(32)))
            except sa.exc.IntegrityError:
                pass
            value = conn.execute(sa.select(db.meta.c.value).where(db.meta.c.key == "secret")).scalar()
    return value.encode()


def _sig(secret: bytes, rater: str) -> str:
    mac = hmac.new(secret, rater.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SIG_CHARS]


def sign(secret: bytes, rater: str) -> str:
    return f"{rater}.{_sig(secret, rater)}"


def verify(secret: bytes, token: str) -> str | None:
    """The rater id a token was issued for, or None if it is forged, truncated or malformed."""
    rater, _, sig = (token or "").strip().rpartition(".")
    if not rater or len(sig) != SIG_CHARS or not hmac.compare_digest(sig, _sig(secret, rater)):
        return None
    return rater


def new_rater_id() -> str:
    return "r" + secrets.token_hex(6)


class Throttle:
    """At most ``limit`` failed attempts per client in ``window`` seconds; further attempts are refused unchecked."""

    def __init__(self, limit: int = 5, window: float = 60.0):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def _recent(self, client: str) -> deque:
        q, cutoff = self.failures[client], time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def check(self, client: str) -> None:
        with self.lock:
            q = self._recent(client)
            if len(q) >= self.limit:
                wait = int(q[0] + self.window - time.monotonic()) + 1
                raise PermissionError(f"Too many wrong passwords; try again in {wait} s.")

    def fail(self, client: str) -> None:
        with self.lock:
            self._recent(client).append(time.monotonic())
