"""The ``email`` target (placeholder while it is written)."""
