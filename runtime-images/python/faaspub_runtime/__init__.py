"""faaspub function runtime: the action protocol proxy and helpers for storage events.

Function authors use the helpers::

    from faaspub_runtime import StorageEvent, open_input, write_output

    def main(params):
        event = StorageEvent.from_cloudevent(params)
        with open_input(event) as fh:
            header = fh.read(1024)
        return {"output": write_output(event, ".summary.json", '{"ok": true}')}

``faaspub_runtime.identity.current()`` tells a function which published version (name, version, image
digest, DOI) is running it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faaspub_runtime.events import (
        EventError,
        StorageEvent,
        make_cloudevent,
        open_input,
        output_path,
        write_output,
    )

__all__ = ["EventError", "StorageEvent", "make_cloudevent", "open_input", "output_path", "write_output"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: ``python -m faaspub_runtime.proxy`` must not pay for urllib/ssl at cold start.
    if name in __all__:
        from faaspub_runtime import events

        return getattr(events, name)
    raise AttributeError(f"module 'faaspub_runtime' has no attribute {name!r}")
