"""Signed provenance checked by the in-toto and securesystemslib verifiers, not only by faaspub's code:
a good envelope verifies; a tampered statement, a wrong key and a statement about another digest are
refused. Keys come from PEM files as an operator writes them with openssl."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from in_toto.exceptions import SignatureVerificationError
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from securesystemslib.dsse import Envelope as SSlibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from publisher.config import Settings
from publisher.errors import ConfigError
from publisher.provenance import envelope, keys
from publisher.provenance.attest import Attached
from publisher.provenance.statement import PREDICATE_TYPE, BuildFacts, parameters, parse, statement
from publisher.provenance.verify import verify

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
FACTS = BuildFacts(
    image="registry.example.org/functions/fs-sc/hello",
    digest=DIGEST,
    function="hello",
    namespace="fs-sc",
    version="1.2.0",
    builder="native",
    source_url="https://gitlab.example.org/fs-sc/hello",
    commit="0" * 40,
    ci_job_url="https://gitlab.example.org/fs-sc/hello/-/jobs/4711",
    doi="10.5281/zenodo.1234",
    concept_doi="10.5281/zenodo.1233",
    base="registry.example.org/faaspub/python-base@sha256:" + "ef" * 32,
)


def pem_key(path: Path) -> Path:
    """An Ed25519 key the way an operator makes one (openssl when present, else cryptography)."""
    if subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)], capture_output=True
    ).returncode:
        private = Ed25519PrivateKey.generate()
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public = serialization.load_pem_private_key(path.read_bytes(), None).public_key()
    path.with_suffix(".pub.pem").write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def settings_with(signing: Path | None, verify_key: Path | None, tmp: Path) -> Settings:
    return Settings.model_validate(
        {
            "state_dir": str(tmp / "state"),
            "provenance": {
                "signing_key_file": str(signing) if signing else None,
                "verify_key_file": str(verify_key) if verify_key else None,
                "generate_key": False,
            },
        }
    )


@pytest.fixture
def facility(tmp_path: Path) -> Path:
    return pem_key(tmp_path / "facility.pem")


def library_key(public_pem: Path) -> SSlibKey:
    """The verify key as the libraries load it themselves."""
    return SSlibKey.from_crypto(serialization.load_pem_public_key(public_pem.read_bytes()))


def signed(signing: Path, tmp: Path, facts: BuildFacts = FACTS) -> bytes:
    signer = keys.load_signer(settings_with(signing, None, tmp))
    assert signer is not None
    return envelope.sign(statement(facts), signer)


def test_libraries_verify_what_faaspub_signs(facility: Path, tmp_path: Path) -> None:
    data = signed(facility, tmp_path)
    key = library_key(facility.with_suffix(".pub.pem"))

    # securesystemslib's DSSE verifier
    accepted = SSlibEnvelope.from_dict(json.loads(data)).verify([key], 1)
    assert list(accepted) == [key.keyid]
    # in-toto's own loader and verifier (it reads DSSE in-toto envelopes by payload type)
    metadata = Metadata.from_dict(json.loads(data))
    assert isinstance(metadata, InTotoEnvelope)
    metadata.verify_signature(key.to_dict() | {"keyid": key.keyid})

    doc = json.loads(metadata.payload)
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    assert doc["subject"] == [{"name": FACTS.image, "digest": {"sha256": "ab" * 32}}]
    predicate = doc["predicate"]
    assert predicate["runDetails"]["metadata"]["invocationId"] == FACTS.ci_job_url
    assert predicate["runDetails"]["builder"]["id"] == "urn:faaspub:builder:native"
    dependencies = predicate["buildDefinition"]["resolvedDependencies"]
    assert {
        "uri": "git+https://gitlab.example.org/fs-sc/hello",
        "digest": {"gitCommit": "0" * 40},
    } in dependencies
    assert parameters(doc)["doi"] == "10.5281/zenodo.1234"
    # Signing the same release again gives the same bytes (attaching twice adds nothing).
    assert signed(facility, tmp_path) == data


def test_a_tampered_statement_is_refused_by_every_verifier(facility: Path, tmp_path: Path) -> None:
    doc = json.loads(signed(facility, tmp_path))
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["subject"][0]["digest"]["sha256"] = "cd" * 32  # point the signed statement at another image
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    tampered = json.dumps(doc).encode()
    key = library_key(facility.with_suffix(".pub.pem"))

    with pytest.raises(VerificationError):
        SSlibEnvelope.from_dict(json.loads(tampered)).verify([key], 1)
    metadata = Metadata.from_dict(json.loads(tampered))
    with pytest.raises(SignatureVerificationError):
        metadata.verify_signature(key.to_dict() | {"keyid": key.keyid})
    with pytest.raises(envelope.NotVerified, match="does not verify"):
        envelope.verify(tampered, key)
    result = verify(Attached([], [tampered]), OTHER, key)
    assert not result.ok and "signature" in result.reason


def test_a_wrong_key_is_refused_by_every_verifier(facility: Path, tmp_path: Path) -> None:
    data = signed(pem_key(tmp_path / "intruder.pem"), tmp_path)
    key = library_key(facility.with_suffix(".pub.pem"))
    with pytest.raises(VerificationError):
        SSlibEnvelope.from_dict(json.loads(data)).verify([key], 1)
    with pytest.raises(SignatureVerificationError):
        Metadata.from_dict(json.loads(data)).verify_signature(key.to_dict() | {"keyid": key.keyid})
    # Even when the intruder claims the facility's key id, the signature itself fails.
    doc = json.loads(data)
    doc["signatures"][0]["keyid"] = key.keyid
    with pytest.raises(VerificationError):
        SSlibEnvelope.from_dict(doc).verify([key], 1)
    result = verify(Attached([], [data, json.dumps(doc).encode()]), DIGEST, key)
    assert not result.ok and "signature: provenance signature does not verify with key" in result.reason


def test_a_statement_about_another_digest_is_refused(facility: Path, tmp_path: Path) -> None:
    data = signed(facility, tmp_path)  # a valid signature, but about DIGEST
    key = library_key(facility.with_suffix(".pub.pem"))
    payload = parse(SSlibEnvelope.from_dict(json.loads(data)).payload)
    assert payload["subject"][0]["digest"]["sha256"] == "ab" * 32  # the library verifies it ...
    result = verify(Attached([], [data]), OTHER, key)  # ... but it is attached to another image
    assert not result.ok
    assert [c.name for c in result.checks if not c.ok] == ["sbom", "subject"]
    assert f"not {OTHER}" in result.reason


def test_an_unsigned_envelope_and_a_foreign_payload_are_refused(facility: Path, tmp_path: Path) -> None:
    key = library_key(facility.with_suffix(".pub.pem"))
    unsigned = json.dumps(
        {
            "payload": base64.b64encode(statement(FACTS)).decode(),
            "payloadType": envelope.PAYLOAD_TYPE,
            "signatures": [],
        }
    ).encode()
    with pytest.raises(envelope.NotVerified, match="not signed"):
        envelope.verify(unsigned, key)
    with pytest.raises(envelope.NotVerified, match="not a DSSE envelope"):
        envelope.verify(b"[1, 2]", key)


def test_the_expected_doi_must_match(facility: Path, tmp_path: Path) -> None:
    key = library_key(facility.with_suffix(".pub.pem"))
    result = verify(Attached([], [signed(facility, tmp_path)]), DIGEST, key, expect_doi="10.5281/zenodo.9999")
    assert "the release reserved 10.5281/zenodo.9999" in result.reason


def test_keys_from_files_errors_name_the_file_never_the_key(
    facility: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = facility.read_text()
    secret = text.splitlines()[1]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(text.replace(secret, secret[::-1]))
    rsa_like = tmp_path / "ec.pem"
    rsa_like.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    errors = []
    for path, expected in (
        (garbage, "cannot be read"),
        (rsa_like, "is not an Ed25519 key"),
        (tmp_path / "missing.pem", "cannot read the provenance signing key"),
    ):
        with pytest.raises(ConfigError, match=expected) as caught:
            keys.load_signer(settings_with(path, None, tmp_path))
        errors.append(str(caught.value))
    assert all(str(tmp_path) in e for e in errors)
    assert secret not in "".join(errors) + caplog.text
    with pytest.raises(ConfigError, match="is not a PEM public key"):
        keys.load_verify_key(settings_with(None, facility, tmp_path))  # a private key is no public key


def test_embedded_mode_generates_one_private_key_on_first_use(tmp_path: Path) -> None:
    settings = Settings.model_validate({"state_dir": str(tmp_path / "state")})
    assert keys.load_verify_key(settings) is None  # verifying never makes a key
    signer = keys.load_signer(settings)
    assert signer is not None
    path = keys.generated_key_path(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = keys.load_signer(settings)
    assert again is not None and again.public_key.keyid == signer.public_key.keyid
    verify_key = keys.load_verify_key(settings)
    assert verify_key is not None and verify_key.keyid == signer.public_key.keyid
    public = library_key(path.with_name(keys.GENERATED_PUBLIC_KEY))
    assert public.keyid == signer.public_key.keyid
    assert isinstance(signer, CryptoSigner)
    # CI turns generation off: no key, no signature.
    off = Settings.model_validate({"state_dir": str(tmp_path / "ci"), "provenance": {"generate_key": False}})
    assert keys.load_signer(off) is None and not keys.generated_key_path(off).exists()
