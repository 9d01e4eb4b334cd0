"""Who may deliver webhooks: per-group ``X-Gitlab-Token`` secrets and Standard Webhooks signatures.

Every configured token is compared in constant time (all of them, so the time taken does not tell
which one nearly matched). A token configured for a group only admits projects of that group; the
global token and the signing secret admit every configured group.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from publisher.config import GitLabSettings, read_secret
from publisher.errors import ConfigError

SIGNATURE_TOLERANCE_S = 300
ALL_GROUPS = "*"


@dataclass(frozen=True)
class Verdict:
    """The result of authenticating one delivery: which groups it may speak for, or why it was refused."""

    groups: frozenset[str] = frozenset()
    reason: str | None = None
    signed: bool = False  # authenticated by webhook-signature (its webhook-id is signed too)

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class Authenticator:
    """Secrets loaded once from configuration; :meth:`check` runs per request without I/O."""

    _tokens: list[tuple[bytes, str]] = field(default_factory=list, repr=False)
    _signing_keys: list[bytes] = field(default_factory=list, repr=False)

    @classmethod
    def from_settings(cls, settings: GitLabSettings) -> Authenticator:
        tokens: list[tuple[bytes, str]] = []
        common = read_secret(settings.webhook_secret, settings.webhook_secret_file, "gitlab.webhook_secret")
        if common:
            tokens.append((common.encode(), ALL_GROUPS))
        for group, path in sorted(settings.webhook_secret_files.items()):
            secret = read_secret(None, path, f"gitlab.webhook_secret_files[{group!r}]")
            if secret:
                tokens.append((secret.encode(), group.strip("/")))
        keys: list[bytes] = []
        signing = read_secret(None, settings.signing_secret_file, "gitlab.signing_secret")
        if signing:
            keys.append(signing_key(signing))
        return cls(tokens, keys)

    @property
    def configured(self) -> bool:
        return bool(self._tokens or self._signing_keys)

    def precheck(self, headers: Mapping[str, str], now: float | None = None) -> Verdict | None:
        """A refusal decided from the headers alone, before any body is read; None: read on.

        A token is checked completely here; a signature needs the body, so only its timestamp is.
        """
        if not self.configured:
            return Verdict(reason="no webhook secret is configured (gitlab.webhook_secret_file)")
        if headers.get("webhook-signature") is not None and self._signing_keys:
            return _stale(headers.get("webhook-timestamp", ""), time.time() if now is None else now)
        verdict = self._check_token(headers)
        return None if verdict.ok else verdict

    def check(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Verdict:
        """Authenticate by signature when the signed headers are present, else by ``X-Gitlab-Token``."""
        if not self.configured:
            return Verdict(reason="no webhook secret is configured (gitlab.webhook_secret_file)")
        signature = headers.get("webhook-signature")
        if signature is not None and self._signing_keys:
            return self._check_signature(headers, signature, body, time.time() if now is None else now)
        return self._check_token(headers)

    def _check_token(self, headers: Mapping[str, str]) -> Verdict:
        token = headers.get("x-gitlab-token")
        if token is None:
            return Verdict(reason="missing X-Gitlab-Token header")
        offered = token.encode()
        groups = {group for secret, group in self._tokens if hmac.compare_digest(secret, offered)}
        if not groups:
            return Verdict(reason="X-Gitlab-Token does not match any configured secret")
        return Verdict(groups=frozenset(groups))

    def _check_signature(
        self, headers: Mapping[str, str], signature: str, body: bytes, now: float
    ) -> Verdict:
        msg_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        stale = _stale(stamp, now)
        if stale is not None:
            return stale
        signed = f"{msg_id}.{stamp}.".encode() + body
        offered = [part.split(",", 1)[1] for part in signature.split() if part.startswith("v1,")]
        valid = False
        for key in self._signing_keys:
            expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
            for candidate in offered:
                valid |= hmac.compare_digest(expected, candidate.encode())
        if not valid:
            return Verdict(reason="webhook-signature does not match the signing secret")
        return Verdict(groups=frozenset({ALL_GROUPS}), signed=True)


def _stale(stamp: str, now: float) -> Verdict | None:
    """A refusal when ``webhook-timestamp`` is not a number or outside the tolerance."""
    try:
        sent = int(stamp)
    except ValueError:
        return Verdict(reason="webhook-timestamp is not a number")
    if abs(now - sent) > SIGNATURE_TOLERANCE_S:
        return Verdict(reason="webhook-timestamp is outside the 5-minute tolerance (replay or clock skew)")
    return None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` signing secret."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise ConfigError("gitlab.signing_secret is not a whsec_<base64> secret") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value GitLab sends for ``body`` (used by tools and tests)."""
    digest = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def admits(groups: frozenset[str], served: list[str], project: str | None) -> bool:
    """Whether a project path belongs to a served group that the delivery's credentials cover."""
    if not project:
        return False
    for group in served:
        group = group.strip("/")
        if project.startswith(group + "/") and (ALL_GROUPS in groups or group in groups):
            return True
    # A per-group token may also name a subgroup of a served group.
    return any(
        project.startswith(g + "/")
        and any(g == s.strip("/") or g.startswith(s.strip("/") + "/") for s in served)
        for g in groups
        if g != ALL_GROUPS
    )
