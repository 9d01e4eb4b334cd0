# Makes dcache_qos.py importable from tests/ with plain pytest.
