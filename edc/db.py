"""Database chores shared by the apps that write rows in bulk."""

from django.db import connection, models


def analyze(*model_classes: type[models.Model]) -> list[str]:
    """ANALYZE the tables of `model_classes` (and of their history models) on PostgreSQL, so the
    planner has statistics right after a bulk load (issue 22: the grid query scanned the whole
    visits table of a new synthetic trial until it was analysed). Autovacuum would get there, but
    only some time after the load, and the first requests pay for it. A no-op on SQLite, where
    the planner keeps no such statistics unless asked and the tables are small. Returns the
    tables analysed."""
    if connection.vendor != "postgresql":
        return []
    tables: list[str] = []
    for model in model_classes:
        tables.append(model._meta.db_table)
        history = getattr(model, "history", None)
        if history is not None and hasattr(history, "model"):
            tables.append(history.model._meta.db_table)
    tables = list(dict.fromkeys(tables))
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    return tables
