"""Test-wide configuration: shared fixtures come from plugins (real components and test servers)."""

pytest_plugins = [
    "tests.infra.containers",
    "tests.infra.ceph",
    "tests.fakes.postgres_fixture",
    "tests.fakes.zenodo_fixture",
    "tests.fakes.gitlab_fixture",
    "tests.fakes.openwhisk_fixture",
    "tests.fakes.dcache_fixture",
    "tests.fakes.scicat_fixture",
    "tests.infra.rucio",
]
