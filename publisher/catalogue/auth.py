"""API tokens: creation, lookup by SHA-256 hash and scope checks (read ⊂ invoke ⊂ admin).

A token is shown once when created; only its SHA-256 hash is stored, so a database dump does not
give anyone the right to invoke. Tokens are random (256 bits), so a plain hash (no salt, no slow
KDF) is enough and lets the lookup use the unique index. Namespace ``*`` is for operators.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from publisher.db.models import ApiToken
from publisher.errors import FaaspubError

Scope = Literal["read", "invoke", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "invoke", "admin")
RANK = {scope: rank for rank, scope in enumerate(SCOPES)}
ANY_NAMESPACE = "*"
PREFIX = "fp_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What an authenticated token may do (never carries the token itself)."""

    token_id: int
    namespace: str
    scope: Scope

    def allows(self, namespace: str, scope: Scope) -> bool:
        """True when this token has ``scope`` (or a larger one) on ``namespace``."""
        return self.namespace in (ANY_NAMESPACE, namespace) and RANK[self.scope] >= RANK[scope]

    @property
    def namespaces(self) -> str | None:
        """The namespace this token is limited to, ``None`` for operator tokens."""
        return None if self.namespace == ANY_NAMESPACE else self.namespace


def create_token(
    session: Session, namespace: str, scope: str, description: str | None = None
) -> tuple[ApiToken, str]:
    """Store a new token for ``namespace`` and ``scope``; returns the row and the token (shown once)."""
    if scope not in RANK:
        raise FaaspubError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if not namespace or not namespace.strip():
        raise FaaspubError("namespace must not be empty", hint="use '*' for an operator token")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        namespace=namespace.strip(), scope=scope, token_hash=hash_token(token), description=description
    )
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> Grant | None:
    """The grant of ``token``, or ``None`` when it is unknown (or revoked)."""
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # The index finds the row; the comparison that decides is constant-time all the same.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    row.last_used = datetime.now(UTC)
    return Grant(token_id=row.id, namespace=row.namespace, scope=row.scope)  # type: ignore[arg-type]


def list_tokens(session: Session, namespace: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if namespace:
        query = query.where(ApiToken.namespace == namespace)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise FaaspubError(f"token {token_id} does not exist", hint="see faaspub token list")
    session.delete(row)
