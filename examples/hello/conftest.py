# Makes hello.py importable from tests/ with plain pytest.
