"""``faaspub verify IMAGE``: check an image's SBOM and signed provenance against the configured key.

Exits 0 only when every check passes: an SBOM is attached and valid CycloneDX 1.6, a provenance
statement is signed by ``[provenance] verify_key_file`` (or this installation's own key), its
subject is the image's digest, and the archive record of the DOI it names lists that digest.
"""

from __future__ import annotations

import click

from publisher.cli.common import config_option, err, json_option, print_json
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline
from publisher.errors import FaaspubError


@click.command()
@click.argument("image")
@config_option
@json_option
def verify(image: str, config: str | None, as_json: bool) -> None:
    """Check IMAGE's SBOM and signed provenance (and its DOI record); non-zero with the reason otherwise."""
    result = Pipeline(Context.from_config(config)).verify(image)
    if as_json:
        print_json({"image": image, **result.as_dict()})
    else:
        for check in result.checks:
            err.print(f"{'ok' if check.ok else 'FAILED'}  {check.name}: {check.detail}", markup=False)
    if not result.ok:
        raise FaaspubError(f"{image} does not verify: {result.reason}")
