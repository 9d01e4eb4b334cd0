"""OCI images without a daemon: deterministic layers, image documents, registry and layout stores."""
