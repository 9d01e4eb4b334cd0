"""The facility's provenance keys: an Ed25519 private key that signs, a public key that verifies.

Keys are PEM files (private: PKCS#8, public: SubjectPublicKeyInfo) named by ``[provenance]
signing_key_file`` and ``verify_key_file``. Without a signing key and with ``generate_key`` on (the
embedded default), a per-installation key is made on first use under ``<state_dir>/provenance/``
(readable by the owner only), so a single machine signs what it builds as well. Errors name the
file and what is wrong with it; key material never appears in messages or logs.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from publisher.config import Settings
from publisher.errors import ConfigError

GENERATED_KEY = "signing-key.pem"
GENERATED_PUBLIC_KEY = "signing-key.pub.pem"


def generated_key_path(settings: Settings) -> Path:
    return settings.state_path.expanduser() / "provenance" / GENERATED_KEY


def signing_key_path(settings: Settings) -> Path | None:
    """The private key file that signs: the configured one, else the generated one (if allowed)."""
    configured = settings.provenance.signing_key_file
    if configured:
        return Path(configured).expanduser()
    if settings.provenance.generate_key:
        return generated_key_path(settings)
    return None


def load_signer(settings: Settings) -> CryptoSigner | None:
    """The signer of this installation, or ``None`` when it has no signing key (CI without a key)."""
    path = signing_key_path(settings)
    if path is None:
        return None
    if not path.is_file() and not settings.provenance.signing_key_file:
        generate_key(path)
    private = read_private_key(path)
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def load_verify_key(settings: Settings) -> SSlibKey | None:
    """The public key images must verify with: ``verify_key_file``, else the signer's own key."""
    configured = settings.provenance.verify_key_file
    if configured:
        return SSlibKey.from_crypto(read_public_key(Path(configured).expanduser()))
    # Never generate a key just to verify: a key made now has signed nothing.
    path = signing_key_path(settings)
    if path is None or not path.is_file():
        return None
    return SSlibKey.from_crypto(read_private_key(path).public_key())


def generate_key(path: Path) -> None:
    """Write a new Ed25519 key (PKCS#8 PEM, mode 0600) and its public key beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    path.with_name(GENERATED_PUBLIC_KEY).write_bytes(public_pem(private.public_key()))


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read(path, "provenance signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if "password" in str(exc).lower() else "it is not a PEM private key"
        raise ConfigError(
            f"provenance signing key {path}: cannot be read ({reason})",
            hint="an unencrypted Ed25519 key in PKCS#8 PEM: openssl genpkey -algorithm ed25519",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"provenance signing key {path} is not an Ed25519 key",
            hint="openssl genpkey -algorithm ed25519 -out signing.pem",
        )
    return key


def read_public_key(path: Path) -> Ed25519PublicKey:
    data = _read(path, "provenance verify key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(
            f"provenance verify key {path} is not a PEM public key",
            hint="openssl pkey -in signing.pem -pubout -out signing.pub.pem",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"provenance verify key {path} is not an Ed25519 public key")
    return key


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None
