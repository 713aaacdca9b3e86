"""Data contracts as data (YAML under contracts/) and the code that loads them and builds GE suites.

Imports no project code: ssl_ops, assets and pipelines depend on this package, never the reverse.
"""

from data_contracts.contract import CONTRACTS_DIR, Contract, ContractError, load_contract

__all__ = ["CONTRACTS_DIR", "Contract", "ContractError", "load_contract"]
