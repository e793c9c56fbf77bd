"""Records: locks/freezes and data_changed, the rules every writer obeys (below participants, visits, safety)."""
