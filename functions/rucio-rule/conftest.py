# Makes rucio_rule.py importable from tests/ with plain pytest.
