"""``faaspub serve``: the webhook service, catalogue and API, with workers and event consumers."""

from __future__ import annotations

import click

from publisher.cli.common import config_option, err
from publisher.core.context import Context


@click.command()
@config_option
@click.option("--listen", default=None, help="host:port (default from [server] listen, 127.0.0.1:8080).")
@click.option(
    "--no-background", is_flag=True, help="Serve HTTP only: no workers, no storage-event consumers."
)
def serve(config: str | None, listen: str | None, no_background: bool) -> None:
    """Run the service (default http://127.0.0.1:8080)."""
    import uvicorn

    from publisher.backends.executor import isolation_warning
    from publisher.logs import configure_logging
    from webhooks.app import create_app

    context = Context.from_config(config)
    if listen:
        context.settings.server.listen = listen
    server = context.settings.server
    configure_logging(server.log_format)
    err.print(f"faaspub serving on http://{server.listen} (catalogue /, API /api/v1, /openapi.json)")
    if warning := isolation_warning(context.settings):
        err.print(f"warning: {warning}")
    uvicorn.run(
        create_app(context, background=not no_background),
        host=server.host,
        port=server.port,
        log_level="info",
        access_log=False,
    )
