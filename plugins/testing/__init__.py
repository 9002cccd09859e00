"""Connector conformance suite (pytest plugin)."""
