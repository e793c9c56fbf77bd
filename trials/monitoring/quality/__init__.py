"""Data-quality rules over stored data: the trial file's `quality_rules:` run over every CRF entry of a
trial (on demand and nightly), each hit a query, closed automatically when the data no longer hit."""
