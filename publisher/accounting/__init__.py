"""Accounting for operators: runs, GB-seconds, failures and bytes read, per namespace and function."""
