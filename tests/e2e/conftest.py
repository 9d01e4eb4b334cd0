"""Fixtures of the end-to-end tests: the CI harness of tests/ci (gitlab-ci-local, tools image, git remote).

The registry, podman, base image and the GitLab/Zenodo/OpenWhisk/dCache test servers come suite-wide
from tests/conftest.py.
"""

from tests.ci.conftest import gcl, git_server, tools_image

__all__ = ["gcl", "git_server", "tools_image"]
