"""Registry credentials: explicit user/password or a Docker ``config.json``, and auth challenges.

Credentials are kept in private attributes and only ever sent in headers; ``repr`` never shows them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from publisher.errors import FaaspubError

_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    """A username and password for one registry host."""

    username: str
    _password: str = field(repr=False)

    @property
    def password(self) -> str:
        return self._password

    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self._password}".encode()).decode()


def docker_config_credentials(path: str | Path, host: str) -> Credentials | None:
    """The credentials for ``host`` in a Docker ``config.json`` (``auths[host].auth``), if any.

    Keys may be a bare ``host[:port]`` or a URL (``https://host/v1/``), as ``docker login`` writes.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaaspubError(f"cannot read registry credentials from {file}: {exc}") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if _host_of(key) != host or not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise FaaspubError(f"{file}: auths[{key!r}].auth is not base64 of 'user:password'") from None
            if user and password:
                return Credentials(user, password)
    return None


def _host_of(key: str) -> str:
    return re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]


@dataclass(frozen=True)
class Challenge:
    """A parsed ``Www-Authenticate`` header: scheme (``basic``/``bearer``) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))
