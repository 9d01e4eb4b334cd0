"""The S3 API faaspub calls itself (boto3): list the objects under a prefix, presign a read URL.

The credentials come from ``storage.s3.credentials_file`` in the AWS shared-credentials format
(``[profile]`` with ``aws_access_key_id`` and ``aws_secret_access_key``), and only from there: the
service does not pick up whatever credentials its environment happens to hold. Functions never
get them; they read objects through presigned URLs made at delivery time.
"""

from __future__ import annotations

import configparser
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from publisher.config import S3StorageSettings
from publisher.core.types import StorageEvent
from publisher.errors import ConfigError

PAGE = 1000  # ListObjectsV2's maximum


def read_credentials(path: str, profile: str) -> dict[str, str]:
    """boto3 client arguments from an AWS shared-credentials file; errors name the file, not its content."""
    file = Path(path).expanduser()
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(file.read_text(encoding="utf-8"), source=str(file))
    except OSError as exc:
        raise ConfigError(f"cannot read storage.s3 credentials from {file}: {exc.strerror}") from None
    except configparser.Error:
        raise ConfigError(f"storage.s3 credentials file {file} is not an INI file") from None
    if not parser.has_section(profile):
        raise ConfigError(f"storage.s3 credentials file {file} has no [{profile}] section")
    section = parser[profile]
    names = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
    missing = [name for name in names[:2] if not section.get(name)]
    if missing:
        raise ConfigError(f"storage.s3 credentials file {file} [{profile}] lacks {', '.join(missing)}")
    return {name: section[name] for name in names if section.get(name)}


class S3Api:
    """Listing and presigning with one boto3 client, made on first use (so a credentials file
    fixed while the service runs is picked up by the next attempt)."""

    def __init__(self, settings: S3StorageSettings) -> None:
        self.settings = settings
        self.endpoint = settings.endpoint.rstrip("/") if settings.endpoint else None
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Listing and presigning need an endpoint and credentials; notifications alone do not."""
        return bool(self.endpoint and self.settings.credentials_file)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                if not self.configured:
                    raise ConfigError("storage.s3 needs endpoint and credentials_file to list and presign")
                s3 = self.settings
                self._client = boto3.client(
                    "s3",
                    endpoint_url=self.endpoint,
                    region_name=s3.region,
                    verify=s3.verify_tls,
                    config=Config(
                        s3={"addressing_style": s3.addressing_style},
                        signature_version="s3v4",
                        connect_timeout=5,
                        read_timeout=30,
                        retries={"max_attempts": 3, "mode": "standard"},
                    ),
                    **read_credentials(s3.credentials_file or "", s3.profile),
                )
            return self._client

    def objects(self, bucket: str, prefix: str, recursive: bool) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``ListObjectsV2`` entries under ``prefix`` (only direct children unless recursive)."""
        arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": PAGE}
        if not recursive:
            arguments["Delimiter"] = "/"
        for page in self.client().get_paginator("list_objects_v2").paginate(**arguments):
            yield page.get("Contents", [])

    def presign(self, bucket: str, key: str) -> str:
        """A URL that reads the object for ``presign_expiry_s`` seconds without any credentials."""
        url: str = self.client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.settings.presign_expiry_s
        )
        return url

    def url_for(self, event: StorageEvent) -> str | None:
        """What a function reads the event's object from: a presigned URL for a created S3 object
        when the service has credentials, else the event's own URL."""
        if event.source != "s3" or event.kind != "created" or not self.configured:
            return event.url
        bucket, _, key = event.path.partition("/")
        return self.presign(bucket, key)
