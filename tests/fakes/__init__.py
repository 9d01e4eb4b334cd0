"""Test servers for services that cannot run here (Zenodo, GitLab, OpenWhisk, dCache)."""
