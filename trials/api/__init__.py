"""The REST API (/api/v1/): personal tokens, read and write of trial data through the same services and scoping as the pages."""
