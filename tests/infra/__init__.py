"""Shared test infrastructure (container fixtures) used as a pytest plugin."""
