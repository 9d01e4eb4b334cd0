"""The function manifest ``function.yaml``: model, loader with line numbers, and checks."""
