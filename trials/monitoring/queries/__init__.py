"""Queries: raising, answering, closing them (services), the reviewer's admin of queries and SDV plans, the site's query pages, and the role checks and reads of queries and SDV (selectors)."""
