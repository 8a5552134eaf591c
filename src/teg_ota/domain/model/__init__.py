"""Plain values shared by the ports, the pure core and the services: the leaf package.

It imports only the standard library (an import-linter contract says so).
"""
