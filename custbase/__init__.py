"""custbase."""
