# Makes summary.py importable from tests/ with plain pytest.
