"""Model runners and the catalog of bundled models."""
