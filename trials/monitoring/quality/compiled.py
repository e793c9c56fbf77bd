"""The simplest data-quality rule shapes compiled to one SQL statement (PostgreSQL), CEL the fallback.

A rule on a CRF is compiled when its expression is built only of:
- comparisons (`<`, `<=`, `>`, `>=`) between items of the CRF, `previous.<same CRF>.<item>`,
  `visit_date`, `consent_date`, number and string literals, a number operand optionally multiplied by
  a literal (`weight_kg <= previous.VITALS.weight_kg * 1.1`); `x == null`, `x != null`;
- `aes.exists(a, a.grade <op> <number>)` (or `a.number`);
- `&&`, `||`, `!` and parentheses over those.
Anything else (other names, functions, `visit.`/`baseline.`, lab, other CRFs, item types whose CEL
value is not the stored JSON value or its decimal string as a double) is evaluated by CEL as before.

Why the SQL gives the same hits as CEL (trials/monitoring/quality/rules.py builds the CEL context):
- Each compiled node is a SQL boolean that is TRUE, FALSE or NULL where CEL gives true, false or an
  error; `&&`, `||` and `!` of CEL absorb errors exactly as SQL's three-valued AND, OR and NOT treat
  NULL (true || error = true, false || error = error, false && error = false), and a hit is a result
  `IS FALSE` as it is `passed is False` for CEL.
- An operand is decided in SQL only in a domain where its CEL value is certain: a JSON null or absent
  item (CEL null), an integral JSON number of at most 15 characters (CEL int, exact as a double
  too), a JSON string (CEL string, compared by code point: `COLLATE "C"` compares the bytes, the
  same order in a UTF8 database, the only encoding compiled for), a decimal item's string of at most 15+15 digits (CEL double `float(Decimal(s))`; PostgreSQL's
  float8 input is correctly rounded too). Outside it (a float in an integer item, a boolean, a
  malformed decimal, a visit without a date, an unscheduled visit at the same position as the
  previous one) the rule is *undecided* for that entry and CEL evaluates it there.
- The cel package's semantics reproduced (tests/monitoring/test_quality_compiled.py checks them on
  the package): an ordering comparison with a null, or between a number and a string, is an error;
  int and double compare by value; `x == null` is true only for null; `int * int` stays an int (no
  overflow here: the literal is below 1,000 and the item below 10^15), `double * double` a double,
  `int * double` an error (so not compiled), a missing `previous` CRF an error. `aes.exists` over
  AE grades/numbers (integers, never null) is SQL's EXISTS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trials.protocol.engine import CrfSchema

PASS_THROUGH = frozenset({"text", "long_text", "integer", "date", "datetime", "single_choice", "yes_no", "scale"})
DOUBLE = frozenset({"decimal", "calculated"})  # a decimal string -> float(Decimal(s))
AE_INT_FIELDS = frozenset({"grade", "number"})  # AdverseEvent columns: integers, not null
DECIMAL_TEXT = r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$"
MAX_INT_FACTOR = 1000
DOUBLE_FACTOR = (1e-6, 1e6)  # |factor| bounds: no float8 overflow or underflow error in PostgreSQL


class Unsupported(Exception):  # noqa: N818 - a signal, not an error: the rule is evaluated by CEL
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)|(?P<str>'[^'\\]*'|\"[^\"\\]*\")"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\|\||&&|<=|>=|==|!=|[<>!*().\[\],-]))"
)


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = expression.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Unsupported(text[pos:])
        pos = match.end()
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
    return out


@dataclass
class Operand:
    """A CEL value as SQL expressions: its number (NULL unless it is one), its string (NULL unless
    it is one), whether it is null, an error, or undecided. `kind`: "int", "double", "str", "null",
    "any" (an item whose JSON type decides: int, string or null)."""

    kind: str
    num: str = "NULL"
    text: str = "NULL"
    is_null: str = "FALSE"
    error: str = "FALSE"
    undecided: str = "FALSE"


@dataclass
class Compiled:
    value: str  # SQL boolean: TRUE/FALSE/NULL as CEL true/false/error
    undecided: str  # SQL boolean, never NULL


@dataclass
class RuleSql:
    """A compiled rule over the columns of `hits_sql`'s typed entries (`win`)."""

    value: str
    undecided: str
    params: dict[str, object]
    items: set[tuple[bool, str, str]]  # (of the previous entry, "any" or "double", item) read
    aes: list[str]  # the predicate over `ae` of each aes.exists, joined as <prefix>_aes<i>


class _Compiler:
    def __init__(self, expression: str, crf: str, item_types: dict[str, str], prefix: str) -> None:
        self.tokens = _tokens(expression)
        self.pos = 0
        self.crf, self.item_types, self.prefix = crf, item_types, prefix
        self.params: dict[str, object] = {}
        self.last: object = None  # the value of the latest parameter
        self.items: set[tuple[bool, str, str]] = set()  # (of the previous entry, "any" or "double", item)
        self.aes: list[str] = []  # predicates over `ae` (an AdverseEvent row) of each aes.exists

    # --- tokens
    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None or (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise Unsupported(f"expected {value or kind}")
        self.pos += 1
        return token[1]

    def at(self, value: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "op" and token[1] == value

    def param(self, value: object, cast: str) -> str:
        name = f"{self.prefix}_{len(self.params)}"
        self.params[name], self.last = value, value
        return f"%({name})s::{cast}"

    # --- grammar
    def compile(self) -> Compiled:
        node = self.disjunction()
        if self.peek() is not None:
            raise Unsupported("trailing tokens")
        return node

    def disjunction(self) -> Compiled:
        node = self.conjunction()
        while self.at("||"):
            self.take("||")
            right = self.conjunction()
            node = Compiled(f"({node.value} OR {right.value})", f"({node.undecided} OR {right.undecided})")
        return node

    def conjunction(self) -> Compiled:
        node = self.unary()
        while self.at("&&"):
            self.take("&&")
            right = self.unary()
            node = Compiled(f"({node.value} AND {right.value})", f"({node.undecided} OR {right.undecided})")
        return node

    def unary(self) -> Compiled:
        if self.at("!"):
            # CEL's `!` binds tighter than a comparison (`!x < 3` is `(!x) < 3`): only `!(…)` and
            # `!aes.exists(…)` are taken.
            self.take("!")
            if not (self.at("(") or self.at("!") or self.peek() == ("id", "aes")):
                raise Unsupported("! of a comparison without parentheses")
            node = self.unary()
            return Compiled(f"(NOT {node.value})", node.undecided)
        if self.at("("):
            self.take("(")
            node = self.disjunction()
            self.take(")")
            return node
        if self.peek() == ("id", "aes"):
            return self.aes_exists()
        return self.comparison()

    def aes_exists(self) -> Compiled:
        if "aes" in self.item_types:
            raise Unsupported("an item named aes")
        self.take("aes")
        self.take(".")
        self.take("exists")
        self.take("(")
        variable = self.take(kind="id")
        self.take(",")
        self.take(variable)
        self.take(".")
        column = self.take(kind="id")
        if column not in AE_INT_FIELDS:
            raise Unsupported(f"aes field {column}")
        op = self.take(kind="op")
        if op not in {"<", "<=", ">", ">="}:
            raise Unsupported(op)
        literal = self.literal()
        if literal.kind not in {"int", "double"}:
            raise Unsupported("aes against a non-number")
        self.take(")")
        cast = "float8" if literal.kind == "double" else "numeric"
        self.aes.append(f"ae.{column}::{cast} {op} {literal.num}")
        return Compiled(f"({self.prefix}_aes{len(self.aes) - 1}.participant_id IS NOT NULL)", "FALSE")

    def comparison(self) -> Compiled:
        left = self.term()
        token = self.peek()
        if token is None or token[0] != "op" or token[1] not in {"<", "<=", ">", ">=", "==", "!="}:
            raise Unsupported("not a comparison")
        op = self.take()
        right = self.term()
        if self.peek() is not None and self.peek()[1] in {"<", "<=", ">", ">=", "==", "!="}:
            raise Unsupported("chained comparison")
        undecided = f"({left.undecided} OR {right.undecided})"
        if op in {"==", "!="}:
            if right.kind == "null":
                left, right = right, left
            if left.kind != "null" or right.kind == "null":
                raise Unsupported("equality other than with null")
            value = f"(CASE WHEN {right.error} THEN NULL ELSE {right.is_null} END)"
            return Compiled(value if op == "==" else f"(NOT {value})", undecided)
        # A number column is NULL unless the value is a number (a string, a null, a missing previous
        # entry: CEL errors here), a string column unless it is a string: the SQL comparison is
        # then NULL as the CEL comparison is an error. Two items compare as numbers or as strings.
        kinds = {left.kind, right.kind}
        parts = []
        if kinds <= {"any", "int", "double"}:
            cast = "::float8" if "double" in kinds else ""  # exact: integers below 10^15
            parts.append(f"{left.num}{cast} {op} {right.num}{cast}")
        if kinds <= {"any", "str"}:
            parts.append(f'{left.text} COLLATE "C" {op} {right.text}')
        if not parts:
            return Compiled("NULL::boolean", undecided)  # null, or a number against a string: an error
        value = f"({parts[0]})" if len(parts) == 1 else f"COALESCE(({parts[0]}), ({parts[1]}))"
        return Compiled(value, undecided)

    def term(self) -> Operand:
        operand = self.factor()
        if not self.at("*"):
            return operand
        self.take("*")
        factor = self.literal()
        if operand.kind == "double" and factor.kind == "double":
            magnitude = abs(self.last)
            if magnitude and not DOUBLE_FACTOR[0] <= magnitude <= DOUBLE_FACTOR[1]:
                raise Unsupported("factor out of bounds")
        elif operand.kind == "any" and factor.kind == "int":
            if abs(self.last) >= MAX_INT_FACTOR:
                raise Unsupported("factor out of bounds")
        else:
            raise Unsupported(f"{operand.kind} * {factor.kind}")
        # null * x and string * x are CEL errors; the product is of the operand's number type.
        return Operand(
            kind="double" if operand.kind == "double" else "int", num=f"({operand.num} * {factor.num})",
            error=f"({operand.error} OR {operand.is_null} OR {operand.text} IS NOT NULL)", undecided=operand.undecided,
        )

    def literal(self) -> Operand:
        negative = False
        if self.at("-"):
            self.take("-")
            negative = True
        kind, text = self.peek() or ("", "")
        if kind != "num":
            raise Unsupported("not a number literal")
        self.take()
        if re.fullmatch(r"\d+", text):
            number = int(text) * (-1 if negative else 1)
            if abs(number) >= 10**15:
                raise Unsupported("large integer")
            return Operand("int", num=self.param(number, "numeric"))
        number = float(text) * (-1 if negative else 1)
        if not abs(number) < 1e15:
            raise Unsupported("large double")
        return Operand("double", num=self.param(number, "float8"))

    def factor(self) -> Operand:
        kind, text = self.peek() or ("", "")
        if kind == "num" or (kind == "op" and text == "-"):
            return self.literal()
        if kind == "str":
            self.take()
            return Operand("str", text=self.param(text[1:-1], "text"))
        if kind != "id":
            raise Unsupported(text)
        name = self.take()
        if name == "null":
            return Operand("null", is_null="TRUE")
        if name in {"true", "false"}:
            raise Unsupported("boolean literal")
        if name == "previous":
            code = self.crf_code()
            if code != self.crf:
                raise Unsupported("previous entry of another CRF")
            self.take(".")
            item = self.take(kind="id")
            if item not in self.item_types:
                raise Unsupported(f"unknown item {item}")
            # No earlier entry of the CRF: CEL's `previous` has no such key, an error. The previous row
            # at the same (order, sequence) (two visits there) is not CEL's `previous`: undecided.
            return self._item(
                item, self.item_types[item], previous=True, missing="prev_id IS NULL",
                undecided_extra="(prev_id IS NOT NULL AND prev_order = v_order AND prev_sequence = v_sequence)",
            )
        if self.at(".") or self.at("["):
            raise Unsupported(f"member of {name}")
        if name in {"visit_date", "today"}:
            if name == "today":
                raise Unsupported("today")  # the site's: not compiled
            return Operand("str", text="visit_date_text", undecided="(visit_date_text IS NULL)")
        if name in self.item_types:
            if name in {"aes", "lab", "visit", "previous", "baseline"}:
                raise Unsupported(f"an item named {name}")
            return self._item(name, self.item_types[name])
        if name == "consent_date":
            return Operand("str", text="consent_text", is_null="(consent_text IS NULL)")
        raise Unsupported(f"name {name}")

    def crf_code(self) -> str:
        if self.at("."):
            self.take(".")
            return self.take(kind="id")
        self.take("[")
        kind, text = self.peek() or ("", "")
        if kind != "str":
            raise Unsupported("index")
        self.take()
        self.take("]")
        return text[1:-1]

    def _item(self, name: str, item_type: str, *, previous: bool = False, missing: str = "FALSE", undecided_extra: str = "FALSE") -> Operand:
        """An item of the entry (or of the previous one) as CEL sees it, from the columns `hits_sql`
        derives once per row from its stored JSON value (`item_columns`)."""
        if item_type not in PASS_THROUGH | DOUBLE:
            raise Unsupported(f"a {item_type} item")
        kind = "double" if item_type in DOUBLE else "any"
        self.items.add((previous, kind, name))
        n, t, z, u = (column(previous, kind, role, name) for role in "ntzu")
        return Operand(
            kind, num=n, text=t if kind == "any" else "NULL", is_null=f"({missing} OR {z})", error=missing,
            undecided=f"((NOT ({missing}) AND {u}) OR {undecided_extra})",
        )


def column(previous: bool, kind: str, role: str, name: str) -> str:
    """The column of an item's number (n), string (t), null (z) or undecided (u) value."""
    return f'"{"prev " if previous else ""}{kind} {role} {name}"'


def item_columns(name: str, kind: str) -> list[str]:
    """The SELECT list typing an item as CEL sees it, from its stored JSON value's type and text
    (`k <item>`: jsonb_typeof, NULL when absent; `s <item>`: `->>`), extracted once per row by the
    `extracted` step; the previous entry's are these columns through LAG:
    - null (`z`): absent or JSON null;
    - "any" (CEL sees the stored value): a number (`n`) if a JSON number, a string (`t`) if a string;
      undecided (`u`) if a number with a point (jsonb prints a number with its scale and never with
      an exponent: one without a point is an integer, as Python reads it) or of more than 15
      characters, or a boolean, list or map;
    - "double" (a decimal string CEL sees as float(Decimal(s))): a number if a plain decimal of at
      most 15+15 digits (float8 input is correctly rounded, as float(Decimal) is), else undecided."""
    k, text = f'"k {name}"', f'"s {name}"'
    n, t, z, u = (column(False, kind, role, name) for role in "ntzu")
    null = f"({k} IS NULL OR {k} = 'null')"
    if kind == "double":
        plain = f"({k} = 'string' AND {text} ~ '{DECIMAL_TEXT}')"
        return [f"CASE WHEN {plain} THEN {text}::float8 END AS {n}", f"{null} AS {z}", f"NOT ({null} OR {plain}) AS {u}"]
    return [
        f"CASE WHEN {k} = 'number' THEN {text}::numeric END AS {n}", f"CASE WHEN {k} = 'string' THEN {text} END AS {t}",
        f"{null} AS {z}",
        f"CASE WHEN {k} = 'number' THEN strpos({text}, '.') > 0 OR length({text}) > 15 ELSE COALESCE({k} IN ('boolean', 'object', 'array'), FALSE) END AS {u}",
    ]


def item_types(schemas: list[CrfSchema]) -> dict[str, str]:
    """The items whose type is the same in every version of a CRF (name -> type); the others are
    not compiled (a rule reading them is left to CEL)."""
    types: dict[str, str] | None = None
    for schema in schemas:
        here = {item.name: item.type for item in schema.items if item.type in PASS_THROUGH | DOUBLE}
        types = here if types is None else {name: kind for name, kind in types.items() if here.get(name) == kind}
    return types or {}


def compile_rule(expression: str, crf: str, types: dict[str, str], prefix: str) -> RuleSql | None:
    """The rule as SQL over the columns `hits_sql` selects, or None when CEL must evaluate it.
    `prefix` names its parameters and joins (unique per rule of a run)."""
    try:
        compiler = _Compiler(expression, crf, types, prefix)
        node = compiler.compile()
    except Unsupported:
        return None
    return RuleSql(node.value, node.undecided, compiler.params, compiler.items, compiler.aes)


def hits_sql(trial_id: int, rules: dict[str, tuple[str, RuleSql]], not_started: str) -> tuple[str, dict]:
    """One statement evaluating the compiled rules (prefix -> (CRF code, RuleSql)) over the trial's
    entries: a row per entry some rule hits or leaves undecided, with `hit <prefix>` and
    `undecided <prefix>` per rule. The previous entry of a CRF is the one before in the participant's
    entries of that CRF ordered as rules.py walks them (visit order, sequence, visit, entry). Each
    item read is extracted from the JSON and typed once per row (the `j`, then `typed` steps)."""
    params: dict[str, object] = {"trial": trial_id, "codes": sorted({crf for crf, _ in rules.values()}), "not_started": not_started}
    items = sorted(set().union(*(rule.items for _, rule in rules.values())))
    names = sorted({name for _, _, name in items})
    params.update({f"item_{n}": name for n, name in enumerate(names)})
    extracted = [
        column for n, name in enumerate(names) for column in (
            f'jsonb_typeof(ce.answers -> %(item_{n})s::text) AS "k {name}"', f'ce.answers ->> %(item_{n})s::text AS "s {name}"',
        )
    ]
    current = sorted({(kind, name) for _, kind, name in items})
    typed = [c for kind, name in current for c in item_columns(name, kind)]
    typed_names = [f"{column(False, kind, role, name)}" for kind, name in current for role in ("ntzu" if kind == "any" else "nzu")]
    lagged = [
        f"LAG({column(False, kind, role, name)}) OVER w AS {column(True, kind, role, name)}"
        for previous, kind, name in items if previous for role in ("ntzu" if kind == "any" else "nzu")
    ]
    joins, selected, flags, wanted = [], [], [], []
    ae_aliases: dict[tuple, str] = {}
    for prefix, (crf, rule) in rules.items():
        params.update(rule.params)
        params[f"{prefix}_crf"] = crf
        value = rule.value
        for n, predicate in enumerate(rule.aes):
            # The same predicate with the same literal (one per CRF, say) is joined once.
            key = (predicate.replace(prefix, "{p}"), tuple(v for k, v in sorted(rule.params.items()) if f"%({k})s" in predicate))
            alias = ae_aliases.setdefault(key, f"aes{len(ae_aliases)}")
            if len(ae_aliases) > len(joins):
                joins.append(
                    f" LEFT JOIN (SELECT DISTINCT ae.participant_id FROM safety_adverseevent ae"
                    f" JOIN participants_participant ap ON ap.id = ae.participant_id"
                    f" WHERE ap.trial_id = %(trial)s AND {predicate}) {alias} ON {alias}.participant_id = win.participant_id"
                )
            value = value.replace(f"{prefix}_aes{n}.participant_id", f"{alias}.participant_id")
        on_crf = f"win.crf_code = %({prefix}_crf)s"
        selected.append(f'CASE WHEN {on_crf} THEN {value} END AS "value {prefix}"')
        selected.append(f'CASE WHEN {on_crf} THEN {rule.undecided} ELSE FALSE END AS "undecided {prefix}"')
        flags.append(f'"value {prefix}" IS FALSE AND NOT "undecided {prefix}" AS "hit {prefix}", "undecided {prefix}"')
        wanted.append(f'"value {prefix}" IS FALSE OR "undecided {prefix}"')
    reads = " ".join(rule.value + rule.undecided for _, rule in rules.values())
    visit_date = "to_char(v.visit_date, 'YYYY-MM-DD')" if "visit_date_text" in reads else "NULL::text"
    consent_date = "to_char(p.consent_date, 'YYYY-MM-DD')" if "consent_text" in reads else "NULL::text"
    # Each step a subquery PostgreSQL does not merge into the next (OFFSET 0, the window): a column
    # is computed once per row, not once per use.
    sql = f"""
        WITH extracted AS (
            SELECT ce.id, ce.crf_code, ce.crf_id, ce.visit_id, ce.participant_id,
                   v."order" AS v_order, v.sequence AS v_sequence,
                   {visit_date} AS visit_date_text, {consent_date} AS consent_text{"".join(", " + c for c in extracted)}
            FROM visits_crfentry ce JOIN visits_visit v ON v.id = ce.visit_id
            JOIN participants_participant p ON p.id = ce.participant_id
            WHERE p.trial_id = %(trial)s AND ce.crf_code = ANY(%(codes)s) AND ce.status <> %(not_started)s
            OFFSET 0
        ), typed AS (
            SELECT id, crf_code, crf_id, visit_id, participant_id, v_order, v_sequence, visit_date_text,
                   consent_text{"".join(", " + c for c in typed)}
            FROM extracted OFFSET 0
        ), win AS (
            SELECT id, crf_code, crf_id, visit_id, participant_id, v_order, v_sequence, visit_date_text, consent_text,
                   LAG(id) OVER w AS prev_id, LAG(v_order) OVER w AS prev_order,
                   LAG(v_sequence) OVER w AS prev_sequence{"".join(", " + c for c in typed_names + lagged)}
            FROM typed
            WINDOW w AS (PARTITION BY participant_id, crf_code ORDER BY v_order, v_sequence, visit_id, id)
        ), r AS MATERIALIZED (
            SELECT win.id, win.crf_code, win.crf_id, win.visit_id, win.participant_id, {", ".join(selected)}
            FROM win{"".join(joins)}
        )
        SELECT id, crf_code, crf_id, visit_id, participant_id, {", ".join(flags)}
        FROM r WHERE {" OR ".join(wanted)}
    """
    return sql, params
