"""Read locust's final summary table (printed at exit, after --stop-timeout let the users finish
their flow; the CSV is written before that, so it misses the last saves): requests and failures per
name. Used by loadtest.sh and faults.sh."""

import re
import sys

ROW = re.compile(r"^(?:GET|POST)?\s+(?P<name>.+?)\s{2,}(?P<count>\d+)\s+(?P<fails>\d+)\(")
STATS = re.compile(r"\|\s+(?P<avg>\d+)\s+(?P<min>\d+)\s+(?P<max>\d+)\s+(?P<med>\d+)\s+\|")


def table(path: str) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, int]] = {}
    for line in open(path):
        if line.startswith("Response time percentiles"):
            break
        match = ROW.match(line.rstrip())
        if match and match["name"].strip() not in rows and "Name" not in match["name"]:
            stats = STATS.search(line)
            rows[match["name"].strip()] = {"count": int(match["count"]), "fails": int(match["fails"]),
                                           "median": int(stats["med"]) if stats else -1}
    return rows


if __name__ == "__main__":
    print(table(sys.argv[1]))
