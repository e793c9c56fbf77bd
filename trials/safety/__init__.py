"""Safety: adverse events, coding, reporting clocks and alerts, safety summaries, the 3+3 escalation rule (the AE pages' queries come through safety/hooks.py)."""
