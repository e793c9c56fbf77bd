"""Operational reports of a trial (issue 21): enrolment, screening funnel, visit compliance, query
ageing, SDV progress, CRF completion lag; each a table on one page and a CSV."""
