"""The enrolment chart of the reports page: cumulative enrolment per site and for all the user's
sites, month by month, against the trial's target, drawn as an inline SVG by the server (no
JavaScript, no CDN). The table "Enrolment over time" under it is its text alternative.

Geometry (SVG user units): a WIDTH × HEIGHT canvas, the plot inside the margins; month i of n at
x = LEFT + i × plot width / (n − 1) (one month: the middle); a count v at
y = TOP + plot height × (1 − v / y_max), y_max = the larger of the target and the highest count."""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 170, 16, 40
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
# Okabe–Ito colour-blind-safe palette (Okabe & Ito 2008), then dashes tell the lines apart too.
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
DASHES = ["", "6 3", "2 3", "8 3 2 3"]


@dataclass
class Series:
    label: str
    values: list[int]
    colour: str
    dash: str = ""
    width: float = 2
    points: list[tuple[float, float]] = field(default_factory=list)
    legend_y: float = 0

    @property
    def points_attr(self) -> str:
        return " ".join(f"{x:g},{y:g}" for x, y in self.points)

    @property
    def end(self) -> tuple[float, float]:
        return self.points[-1]


@dataclass
class Chart:
    months: list[str]
    series: list[Series]
    target: int | None
    y_max: int
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, int]]
    target_y: float | None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_right: int = WIDTH - RIGHT
    plot_bottom: int = HEIGHT - BOTTOM


def x_of(index: int, n: int) -> float:
    return round(LEFT + (PLOT_W / 2 if n == 1 else index * PLOT_W / (n - 1)), 1)


def y_of(value: float, y_max: int) -> float:
    return round(TOP + PLOT_H * (1 - value / y_max), 1)


def enrolment_chart(rows: list[dict], site_codes: list[str], target: int | None, all_label: str) -> Chart | None:
    """The chart of the report "Enrolment over time" (its rows: month, cumulative, and
    cumulative_<site> per site). None when nobody is enrolled yet."""
    if not rows:
        return None
    months = [row["month"] for row in rows]
    series = [
        Series(code, [row.get(f"cumulative_{code}", 0) for row in rows], COLOURS[i % len(COLOURS)], DASHES[i % len(DASHES)])
        for i, code in enumerate(site_codes)
    ]
    # All sites first: drawn beneath, so a site line on the same values stays visible on top of it.
    series.insert(0, Series(str(all_label), [row["cumulative"] for row in rows], "#6c757d", "", 4))
    y_max = max([target or 0, *[max(s.values) for s in series], 1])
    n = len(months)
    for i, s in enumerate(series):
        s.legend_y = TOP + 8 + 18 * i
        s.points = [(x_of(i, n), y_of(v, y_max)) for i, v in enumerate(s.values)]
    step = max(1, n // 8)  # at most about 8 month labels
    x_ticks = [(x_of(i, n), months[i]) for i in range(0, n, step)]
    y_step = max(1, -(-y_max // 5))
    y_ticks = [(y_of(v, y_max), v) for v in range(0, y_max + 1, y_step)]
    return Chart(months, series, target, y_max, x_ticks, y_ticks, y_of(target, y_max) if target else None)
