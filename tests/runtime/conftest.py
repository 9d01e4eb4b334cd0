"""Make ``faaspub_runtime`` importable from the source tree when the package mapping is absent."""

from __future__ import annotations

import sys

from runtime_endpoint import RUNTIME_SRC

try:
    import faaspub_runtime  # noqa: F401
except ImportError:
    sys.path.insert(0, str(RUNTIME_SRC))
