"""Verbs for function authors: ``init``, ``validate``, ``schema``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from publisher.citation.cff import Citation
from publisher.cli.common import err, json_option, print_json
from publisher.manifest.load import find_functions
from publisher.manifest.model import DEFAULT_RUNTIME, Manifest, manifest_json_schema, outside_registry
from publisher.manifest.problems import Problem
from publisher.manifest.validate import validate_folder
from publisher.scaffold.init import scaffold


@click.command()
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Target folder (default: NAME).")
@click.option(
    "--runtime",
    default=DEFAULT_RUNTIME,
    show_default=True,
    help="python:3.13 or python:3.11 (built here from Debian packages); python:3.12 needs Docker Hub.",
)
@click.option("--description", default=None, help="One sentence saying what the function does.")
def init(name: str, directory: str | None, runtime: str, description: str | None) -> None:
    """Scaffold a function repository: handler, function.yaml, tests, CITATION.cff, CI include."""
    dest = Path(directory or name)
    written = scaffold(name, dest, runtime=runtime, description=description)
    note = outside_registry(runtime)
    if note:
        err.print(f"note: {note}", markup=False)
    err.print(f"created {len(written)} files in {dest}/")
    err.print(f"next: cd {dest} && faaspub validate && pytest && faaspub publish", markup=False)


@click.command()
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@json_option
def validate(directory: str, as_json: bool) -> None:
    """Check function.yaml, the handler, tests and citation metadata; explain every problem."""
    folders = find_functions(Path(directory))
    report: list[dict[str, object]] = []
    failed = False
    if not folders:
        folders = [Path(directory)]  # report the missing function.yaml for this folder
    for folder in folders:
        manifest, citation, problems = validate_folder(folder)
        problems += _archive_problems(citation, manifest)
        failed = failed or bool(problems)
        notes = [note] if manifest and (note := outside_registry(manifest.runtime)) else []
        report.append(
            {
                "folder": str(folder),
                "function": manifest.name if manifest else None,
                "ok": not problems,
                "problems": [p.as_dict() for p in problems],
                "notes": notes,
            }
        )
        if not as_json:
            label = manifest.name if manifest else str(folder)
            for problem in problems:
                err.print(f"error: {folder}/{problem}", markup=False)
            for note in notes:
                err.print(f"note: {folder}/function.yaml: {note}", markup=False)
            if not problems:
                err.print(f"ok: {label}")
    if as_json:
        print_json({"ok": not failed, "functions": report})
    if failed:
        sys.exit(1)


def _archive_problems(citation: Citation | None, manifest: Manifest | None) -> list[Problem]:
    """What the archive (DOI) will need, checked before a tag is pushed."""
    if citation is None or manifest is None:
        return []
    from publisher.archive.checks import archive_problems

    return list(archive_problems(citation, manifest))


@click.command()
def schema() -> None:
    """Print the JSON Schema of function.yaml (for editors and outside checks)."""
    print_json(manifest_json_schema())
