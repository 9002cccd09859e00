"""Persistent state: the catalog of documents, content blobs, the ledger, cursors and runs."""
