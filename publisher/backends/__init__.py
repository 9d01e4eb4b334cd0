"""FaaS backends: the embedded local backend and Apache OpenWhisk.

Both implement :class:`publisher.core.parts.Backend`: an immutable versioned action per release
(``NAME@X.Y.Z``), a moving alias (``NAME``), rollback, prune, invoke and activations. Both record
functions, versions, the alias and triggers in the catalogue tables, so ``faaspub ls`` and the
catalogue pages read one place whatever runs the functions.
"""
