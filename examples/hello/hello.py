"""hello: the smallest faaspub function."""

from typing import Any


def main(params: dict[str, Any]) -> dict[str, Any]:
    """Greet ``params["name"]``; for a storage event, also say which file arrived."""
    result: dict[str, Any] = {"greeting": f"Hello, {params.get('name', 'world')}!"}
    if params.get("specversion") == "1.0":
        result["file"] = params.get("subject")
    return result
