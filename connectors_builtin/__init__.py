"""Connectors shipped with invoicesync, each registered as a plugin through the public hooks."""
