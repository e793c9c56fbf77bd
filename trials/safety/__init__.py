"""Safety: adverse events, coding, reporting clocks and alerts, safety summaries, the 3+3 escalation rule."""
