# Makes index.py importable from tests/ with plain pytest.
