"""The REST API (JSON over the same operations as the pages)."""
