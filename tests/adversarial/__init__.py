"""Tests with hostile input: malformed files and stores, bad settings, unwritable outputs."""
