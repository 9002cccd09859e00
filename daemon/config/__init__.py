"""Configuration: loading, validation and secret references."""
