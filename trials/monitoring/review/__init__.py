"""The monitor's form-view review: a CRF entry as the site sees it, with SDV ticks, queries and history (issue 21)."""
