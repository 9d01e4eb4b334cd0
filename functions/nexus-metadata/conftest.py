# Makes nexus_metadata.py importable from tests/ with plain pytest.
