"""REDCap branching logic and calculations -> CEL (trials.protocol.imports.redcap_logic).

Each case evaluates the translated CEL the way the CRF engine stores answers (choice codes as ints,
yes/no as booleans, checkboxes as lists of ticked codes, unanswered as null) and checks the result
against what REDCap's documentation says the rule means (REDCap Help & FAQ, "Branching Logic" and
"Calculated Fields"; cited per case). The expected values are worked by hand from those rules.
"""

import cel
import pytest
from cel import stdlib

from trials.protocol.imports.redcap_logic import FieldInfo, Untranslatable, parse, translate_calc, translate_logic

FIELDS = {
    "sex": FieldInfo("sex", "choice_int"),
    "grade": FieldInfo("grade", "choice_str"),
    "smoker": FieldInfo("smoker", "bool"),
    "age": FieldInfo("age", "int"),
    "weight": FieldInfo("weight", "double"),
    "height": FieldInfo("height", "double"),
    "meds": FieldInfo("meds", "checkbox_int"),
    "dob": FieldInfo("dob", "date"),
    "seen": FieldInfo("seen", "date"),
    "q1": FieldInfo("q1", "choice_int"),
    "q2": FieldInfo("q2", "choice_int"),
    "q3": FieldInfo("q3", "choice_int"),
    "other_crf": FieldInfo("visit.DEMOG.other_crf", "int"),
}


def run(expression: str, **values):
    context = cel.Context()
    for name in ("sum", "max", "min"):
        context.add_function(name, getattr(stdlib, f"{name}_"))
    context.update({name: None for name in FIELDS if "." not in FIELDS[name].cel_name} | {"today": None} | values)
    try:
        return cel.compile(expression).execute(context)
    except Exception:  # noqa: BLE001 - the engine treats a failing rule as "cannot be evaluated"
        return "error"


@pytest.mark.parametrize(
    ("logic", "answers", "shown"),
    [
        # "=" compares the stored code: [sex] = "1" shows for code 1 only, and not when blank.
        ('[sex] = "1"', {"sex": 1}, True),
        ('[sex] = "1"', {"sex": 0}, False),
        ('[sex] = "1"', {}, False),
        # "<>" (not equal) is true when the field is blank (REDCap: a blank value is not equal to "1").
        ('[sex] <> "1"', {}, True),
        ('[sex] != "1"', {"sex": 1}, False),
        # Checkboxes: [meds(2)] = "1" when option 2 is ticked, = "0" when it is not (blank: not ticked).
        ('[meds(2)] = "1"', {"meds": [1, 2]}, True),
        ('[meds(2)] = "1"', {"meds": [1]}, False),
        ('[meds(2)] = "0"', {}, True),
        ("[meds(2)] = '0'", {"meds": [2]}, False),
        ("[meds(2)] <> '1'", {"meds": [3]}, True),
        # yesno is stored 1 = Yes, 0 = No.
        ("[smoker] = '1'", {"smoker": True}, True),
        ("[smoker] = '0'", {"smoker": True}, False),
        # and / or / not, with REDCap's precedence (and before or) and parentheses.
        ("[sex] = '1' or [age] > 60 and [smoker] = '1'", {"sex": 0, "age": 70, "smoker": False}, False),
        ("([sex] = '1' or [age] > 60) and [smoker] = '1'", {"sex": 1, "age": 20, "smoker": True}, True),
        ("not([sex] = '1')", {"sex": 0}, True),
        # Numbers compare as numbers ("18" in quotes too), decimals against whole numbers.
        ('[age] >= "18"', {"age": 18}, True),
        ("[weight] > 70", {"weight": 70.5}, True),
        ("[weight] <= 70", {"weight": 70.5}, False),
        # Text codes and the empty string test ("" = blank).
        ("[grade] = 'b'", {"grade": "b"}, True),
        ('[grade] = ""', {}, True),
        ('[grade] <> ""', {"grade": "a"}, True),
        # Dates compare in Y-M-D order.
        ("[dob] < '2000-01-01'", {"dob": "1999-12-31"}, True),
        # datediff(d1, d2, "y") is d2 - d1 in years of 365.2425 days: 1990-06-15 to 2026-06-14 is 35.99… years.
        ('datediff([dob], "today", "y") >= 36', {"dob": "1990-06-15", "today": "2026-06-14"}, False),
        ('datediff([dob], "today", "y") >= 36', {"dob": "1990-06-15", "today": "2026-06-16"}, True),
        # A reference to a field of another instrument reads that CRF at the same visit.
        ("[other_crf] > 3", {"visit": {"DEMOG": {"other_crf": 4}}}, True),
    ],
)
def test_branching_logic_follows_redcap_semantics(logic, answers, shown):
    expression = translate_logic(logic, FIELDS)
    assert run(expression, **answers) is shown


@pytest.mark.parametrize(
    ("calc", "answers", "value", "precision"),
    [
        # BMI = weight / height(m)^2: 70 kg, 175 cm -> 70 * 10000 / 30625 = 22.857…, kept to 1 decimal by precision.
        ("round([weight]*10000/(([height])^(2)),1)", {"weight": 70.0, "height": 175.0}, pytest.approx(22.857, abs=0.001), 1),
        # sum() ignores blank fields (REDCap: "sum(...) ... will ignore blank values"): 2 + 1 = 3.
        ("sum([q1],[q2],[q3])", {"q1": 2, "q2": None, "q3": 1}, 3.0, None),
        # mean() likewise: (2 + 1) / 2 = 1.5.
        ("mean([q1],[q2],[q3])", {"q1": 2, "q2": None, "q3": 1}, 1.5, None),
        # if(condition, value if true, value if false).
        ("if([age] >= 65, 2, 1)", {"age": 70}, 2.0, None),
        ("if([age] >= 65, 2, '')", {"age": 30}, None, None),
        # datediff in days: 2024-01-01 to 2024-03-01 is 31 + 29 (leap February) = 60 days; unsigned by default.
        ('datediff([seen],[dob],"d")', {"dob": "2024-03-01", "seen": "2024-01-01"}, 60.0, None),
        ('datediff([dob],[seen],"d","ymd",true)', {"dob": "2024-03-01", "seen": "2024-01-01"}, -60.0, None),
        # round half away from zero inside an expression (PHP's round): round(2.45, 1) + 0 = 2.5; round(-2.5) = -3.
        ("round([weight], 1) + 0", {"weight": 2.45}, pytest.approx(2.5), None),
        ("round([weight]) + 0", {"weight": -2.5}, -3.0, None),
        # rounddown / roundup to whole numbers: 35.99 -> 35, 35.01 -> 36.
        ("rounddown([weight])", {"weight": 35.99}, 35.0, None),
        ("roundup([weight])", {"weight": 35.01}, 36.0, None),
        # Arithmetic on a blank field gives a blank result (the engine stores none).
        ("[weight] * 2", {"weight": None}, "error", None),
        # A ticked checkbox option counts 1 in arithmetic.
        ("[meds(1)] + [meds(2)]", {"meds": [2]}, 1.0, None),
    ],
)
def test_calculations_follow_redcap_semantics(calc, answers, value, precision):
    expression, places = translate_calc(calc, FIELDS)
    assert places == precision
    assert run(expression, **answers) == value


@pytest.mark.parametrize(
    ("logic", "reason"),
    [
        ("[enrollment_arm_1][age] > 18", "another event"),
        ("[event-name] = 'visit_1_arm_1'", "smart variable"),
        ("[sex:value] = 'Male'", "modifiers"),
        ("[unknown] = '1'", "not a field"),
        ("[meds] = '1'", "checkbox"),
        ("[sex] = 'x'", "no choice code"),
        ("[sex] = '1' and", "ends too early"),
        ("[sex] = '1' @ 2", "cannot read"),
        ("stdev([q1],[q2]) > 1", "no CEL equivalent"),
        ("[age] > 1 )", "unexpected"),
    ],
)
def test_untranslatable_logic_says_why(logic, reason):
    with pytest.raises(Untranslatable, match=reason):
        translate_logic(logic, FIELDS)


def test_power_only_with_small_whole_exponents():
    with pytest.raises(Untranslatable, match="exponent"):
        translate_calc("[height]^0.5", FIELDS)


def test_parser_is_a_real_parser_not_pattern_matching():
    # Nested parentheses and precedence: * binds tighter than +, comparison tighter than and.
    assert parse("1 + 2 * 3 = 7 and not (2 > 3)") == (
        "bin", "&&",
        ("bin", "==", ("bin", "+", ("num", "1"), ("bin", "*", ("num", "2"), ("num", "3"))), ("num", "7")),
        ("not", ("bin", ">", ("num", "2"), ("num", "3"))),
    )
    # Keywords are case-insensitive in REDCap (AND / OR).
    assert translate_logic("[sex] = '1' AND [age] > 2 OR [smoker] = '1'", FIELDS) == "(sex == 1 && age > 2.0) || smoker == true"
