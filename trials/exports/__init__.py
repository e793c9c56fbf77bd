"""Exports: export jobs and their formats (CSV, XLSX, ODM, SDTM); imported by no app."""
