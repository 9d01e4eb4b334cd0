"""The ASGI service behind ``faaspub serve``: webhook intake, REST API, catalogue pages, metrics."""
