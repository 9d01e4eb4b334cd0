"""``faaspub token create|list|revoke``: API tokens for the catalogue API (invoke, rollback, replay).

The token is printed once, on creation, and only its SHA-256 hash is stored.
"""

from __future__ import annotations

import click

from publisher.catalogue.auth import SCOPES, create_token, list_tokens, revoke_token
from publisher.cli.common import config_option, err, json_option, out, print_json
from publisher.core.context import Context
from publisher.db.engine import transaction


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command()
@click.option("--namespace", "-n", required=True, help="Namespace the token acts on; '*' for operators.")
@click.option("--scope", type=click.Choice(SCOPES), required=True, help="read ⊂ invoke ⊂ admin.")
@click.option("--description", "-d", default=None, help="What the token is for (shown by token list).")
@config_option
@json_option
def create(namespace: str, scope: str, description: str | None, config: str | None, as_json: bool) -> None:
    """Create a token and print it (once: it cannot be shown again)."""
    context = Context.from_config(config)
    with transaction(context.sessions) as session:
        row, secret = create_token(session, namespace, scope, description)
        token_id = row.id
    if as_json:
        print_json({"id": token_id, "namespace": namespace, "scope": scope, "token": secret})
        return
    err.print(f"token {token_id} for namespace {namespace} ({scope}); store it now, it is not shown again:")
    out.print(secret, markup=False)


@token.command(name="list")
@click.option("--namespace", "-n", default=None, help="Only the tokens of this namespace.")
@config_option
@json_option
def list_(namespace: str | None, config: str | None, as_json: bool) -> None:
    """List tokens (never the tokens themselves)."""
    context = Context.from_config(config)
    with context.sessions() as session:
        rows = [
            {
                "id": row.id,
                "namespace": row.namespace,
                "scope": row.scope,
                "description": row.description,
                "created": row.created.isoformat() if row.created else None,
                "last_used": row.last_used.isoformat() if row.last_used else None,
            }
            for row in list_tokens(session, namespace)
        ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        out.print(
            f"{row['id']:>4}  {row['namespace']:<20} {row['scope']:<7} "
            f"last used {row['last_used'] or 'never':<32} {row['description'] or ''}",
            markup=False,
        )


@token.command()
@click.argument("token_id", type=int)
@config_option
def revoke(token_id: int, config: str | None) -> None:
    """Revoke token TOKEN_ID (see token list); requests with it get 401 from now on."""
    context = Context.from_config(config)
    with transaction(context.sessions) as session:
        revoke_token(session, token_id)
    err.print(f"token {token_id} revoked")
