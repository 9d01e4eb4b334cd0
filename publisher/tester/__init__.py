"""Testers run a function's own tests and the runtime-protocol smoke test inside its images."""
