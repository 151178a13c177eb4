"""Reusable helpers for the test-suite (real servers on loopback, no mocks)."""
