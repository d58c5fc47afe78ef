"""Bundled margin tier tables (JSON), read with importlib.resources; see SOURCES.md."""
