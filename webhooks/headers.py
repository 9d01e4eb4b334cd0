"""Browser protections on every answer: a Content Security Policy, no framing, no sniffing.

The pages load one stylesheet and one script from ``/static`` and nothing from another host, so the
policy allows exactly that. Links built from recorded data (a function's source URL) go through
:func:`http_url`, so a ``javascript:`` or ``data:`` URL is never rendered as a live link.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def http_url(value: object) -> str | None:
    """``value`` when it is an absolute http(s) URL with a host, else None (for ``href`` attributes)."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


class SecurityHeaders:
    """Adds :data:`HEADERS` to every HTTP answer (JSON too: harmless there, and one rule is simpler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
