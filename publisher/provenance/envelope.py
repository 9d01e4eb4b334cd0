"""DSSE envelopes: sign a statement with the facility's Ed25519 key, verify with its public key.

Signing and verifying both go through securesystemslib's DSSE implementation (the one in-toto's
own tooling uses), so an envelope faaspub accepts is one ``in_toto``/``securesystemslib`` accept,
and the other way round.
"""

from __future__ import annotations

import json

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.signer import Key, Signer

from publisher.errors import FaaspubError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


class NotVerified(FaaspubError):
    """An envelope whose signature does not verify with the given key (or that is no envelope)."""


def sign(payload: bytes, signer: Signer) -> bytes:
    """The signed envelope as JSON bytes."""
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def load(data: bytes) -> Envelope:
    try:
        envelope = Envelope.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError, FormatError) as exc:
        raise NotVerified(f"provenance is not a DSSE envelope: {exc}") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise NotVerified(f"provenance envelope carries {envelope.payload_type!r}, not an in-toto statement")
    return envelope


def verify(data: bytes, key: Key) -> bytes:
    """The payload of ``data`` once a signature by ``key`` verifies; :class:`NotVerified` otherwise."""
    envelope = load(data)
    if not envelope.signatures:
        raise NotVerified("provenance is not signed")
    try:
        envelope.verify([key], 1)
    except VerificationError:
        signers = ", ".join(sorted(envelope.signatures)) or "none"
        raise NotVerified(
            f"provenance signature does not verify with key {key.keyid[:16]} (signed by key {signers[:16]})"
        ) from None
    payload: bytes = envelope.payload
    return payload


def key_ids(data: bytes) -> list[str]:
    """The ids of the keys that signed ``data`` (without checking anything)."""
    return sorted(load(data).signatures)
