"""The domain: values (``model``), pure rules (``core``) and the thin shell over the ports
(``services``). Dependencies point one way, held by import-linter (pyproject.toml):
services -> (ports | core) -> model, and model imports only the standard library.
"""
