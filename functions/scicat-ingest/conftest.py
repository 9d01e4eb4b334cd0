# Makes scicat_ingest.py importable from tests/ with plain pytest.
