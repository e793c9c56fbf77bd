"""Demo and synthetic data (the top layer: uses every app, imported by none)."""
