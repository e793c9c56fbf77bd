"""The safety summary's SVG charts in French and Spanish: their coordinates are numbers for the browser,
written with a decimal point whatever the reader's language (Django writes 336,0 in fr/es, which
SVG cannot read: the bars and ticks were drawn nowhere)."""

import re
from datetime import date

import pytest
from django.template.loader import render_to_string
from django.utils import translation

COORDINATE = re.compile(r'\b(?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"')


def grade_chart() -> dict:
    return {
        "width": 480, "height": 260, "left": 40, "right": 470, "top": 10, "bottom": 200, "label_y": 218,
        "legend_y": 248, "ticks": [{"value": 0, "y": 200.0}, {"value": 1, "y": 10.5}],
        "bars": [{
            "label": "All participants", "x": 320.5, "w": 31.5, "cx": 336.0, "total": 1, "total_y": 6.5,
            "segments": [{"grade": 2, "n": 1, "y": 10.5, "h": 189.5, "colour": "#fd7e14"}],
        }],
        "legend": [{"grade": 1, "colour": "#ffe69c", "x": 40}],
    }


def sae_chart() -> dict:
    return {
        "width": 480, "height": 260, "left": 40, "right": 470, "top": 10, "bottom": 200, "label_y": 216,
        "legend_y": 250, "ticks": [{"value": 0, "y": 200.0}, {"value": 2, "y": 10.5}],
        "first": date(2026, 1, 5), "last": date(2026, 3, 1),
        "series": [{"label": "All participants", "colour": "#0d6efd", "total": 2,
                    "points": "40.0,200.0 255.5,200.0 255.5,105.3", "legend_x": 40}],
    }


@pytest.mark.parametrize("language", ["en", "fr", "es"])
@pytest.mark.parametrize(("template", "chart"), [
    ("safety/_summary_grade_chart.html", grade_chart), ("safety/_summary_sae_chart.html", sae_chart),
])
def test_chart_coordinates_keep_a_decimal_point_in_every_language(language, template, chart):
    with translation.override(language):
        html = render_to_string(template, {"chart": chart()})
    coordinates = COORDINATE.findall(html)
    assert "10.5" in coordinates
    assert [c for c in coordinates if not re.fullmatch(r"-?\d+(\.\d+)?", c)] == []
