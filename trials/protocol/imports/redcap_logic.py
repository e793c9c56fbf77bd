"""REDCap branching logic and calculations -> the CEL the CRF engine evaluates (trials.protocol.engine).

A small recursive-descent parser (REDCap's logic is a small language: `[field]`, `[field(code)]`,
literals, `= <> != < <= > >=`, `+ - * / ^`, `and/or/not`, and functions) builds a tree, and the
emitter writes CEL knowing each field's type, because the engine stores answers typed (integers as
ints, decimals as doubles, yes/no as booleans, checkboxes as lists of codes) while REDCap compares
everything loosely as strings or numbers. What has no CEL equivalent raises `Untranslatable` with
the reason; the importer lists it with the dictionary row, it is never silently dropped.

Semantics followed (REDCap Help & FAQ, "Branching Logic" and "Calculated Fields" pages):
- `[cb(code)] = "1"` is true when the checkbox option is ticked, `= "0"` when it is not;
- a blank field compared with `<>` to a value is true, with `=` false; `[f] = ""` tests blank;
- `if(condition, a, b)`; `datediff([d1], [d2], unit[, format][, signed])` is d2 - d1 in `y` (365.2425
  days), `M` (30.44 days), `d`, `h`, `m` or `s`, as an absolute value unless `signed` is true;
- `round(x, n)`, `roundup`, `rounddown`; `sum()`, `min()`, `max()`, `mean()` ignore blank arguments;
- in a calculation, arithmetic reading a blank field gives a blank result (CEL: the program fails on the
  null, and the engine stores no value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Field kinds the emitter needs (set by the importer from the REDCap field type).
NUMBER_KINDS = {"int", "double"}  # int: stored as an int; double: decimal, calculated, slider values as doubles
# Seconds per unit of datediff (REDCap: 1 year = 365.2425 days, 1 month = 30.44 days).
DATEDIFF_UNITS = {"y": 31556952, "M": 2630016, "d": 86400, "h": 3600, "m": 60, "s": 1}


class Untranslatable(Exception):
    """A rule that CEL (as the engine evaluates it) cannot express; the message says why."""


@dataclass(frozen=True)
class FieldInfo:
    """What the emitter knows of a field: its CEL name (`visit.CRF.item` when on another CRF)."""

    cel_name: str
    # int | double | choice_int | choice_str | bool | checkbox | checkbox_int | date | datetime | text
    kind: str


# --- Tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ref>\[[^\[\]]*\])
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<num>\d+(?:\.\d*)?|\.\d+)
    | (?P<op><>|!=|==|<=|>=|&&|\|\||[=<>+\-*/^(),!])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int
    adjacent: bool = False  # follows the previous token with no space (`[event][field]`)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Untranslatable(f"cannot read '{text[pos:].strip()[:20]}' (position {pos + 1})")
        kind = match.lastgroup or ""
        start = match.start(kind)
        tokens.append(Token(kind, match.group(kind), start, adjacent=start == pos and bool(tokens)))
        pos = match.end()
    return tokens


# --- Tree ----------------------------------------------------------------------------------------
# Nodes are tuples: ("ref", name, code|None), ("str", value), ("num", text), ("name", word),
# ("not", node), ("neg", node), ("bin", op, left, right), ("call", name, [args]).

_COMPARISONS = {"=": "==", "==": "==", "<>": "!=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_REF = re.compile(r"^\[\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\(\s*([^()\s]+)\s*\))?\s*\]$")


class Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise Untranslatable("the expression ends too early")
        self.index += 1
        return token

    def accept(self, *texts: str) -> Token | None:
        token = self.peek()
        if token is not None and (token.text in texts or (token.kind == "name" and token.text.lower() in texts)):
            self.index += 1
            return token
        return None

    def expect(self, text: str) -> None:
        if self.accept(text) is None:
            token = self.peek()
            raise Untranslatable(f"expected '{text}' but found {repr(token.text) if token else 'the end'}")

    def parse(self) -> tuple:
        node = self.disjunction()
        token = self.peek()
        if token is not None:
            raise Untranslatable(f"unexpected '{token.text}' (position {token.pos + 1})")
        return node

    def disjunction(self) -> tuple:
        node = self.conjunction()
        while self.accept("or", "||"):
            node = ("bin", "||", node, self.conjunction())
        return node

    def conjunction(self) -> tuple:
        node = self.negation()
        while self.accept("and", "&&"):
            node = ("bin", "&&", node, self.negation())
        return node

    def negation(self) -> tuple:
        if self.accept("not", "!"):
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> tuple:
        node = self.additive()
        token = self.peek()
        if token is not None and token.text in _COMPARISONS:
            self.index += 1
            node = ("bin", _COMPARISONS[token.text], node, self.additive())
        return node

    def additive(self) -> tuple:
        node = self.multiplicative()
        while (token := self.accept("+", "-")) is not None:
            node = ("bin", token.text, node, self.multiplicative())
        return node

    def multiplicative(self) -> tuple:
        node = self.unary()
        while (token := self.accept("*", "/")) is not None:
            node = ("bin", token.text, node, self.unary())
        return node

    def unary(self) -> tuple:
        if self.accept("-"):
            return ("neg", self.unary())
        if self.accept("+"):
            return self.unary()
        return self.power()

    def power(self) -> tuple:
        node = self.primary()
        if self.accept("^"):
            node = ("bin", "^", node, self.unary())
        return node

    def primary(self) -> tuple:
        token = self.take()
        if token.text == "(":
            node = self.disjunction()
            self.expect(")")
            return node
        if token.kind == "num":
            return ("num", token.text)
        if token.kind == "str":
            body = token.text[1:-1]
            return ("str", re.sub(r"\\(.)", r"\1", body))
        if token.kind == "ref":
            following = self.peek()
            if following is not None and following.kind == "ref" and following.adjacent:
                raise Untranslatable(
                    f"{token.text}{following.text} reads another event; the CRF engine reads other CRFs only by "
                    "visit/previous/baseline"
                )
            match = _REF.match(token.text)
            if match is None:
                inner = token.text[1:-1]
                if ":" in inner:
                    raise Untranslatable(f"{token.text}: field modifiers (':value', ':checked'…) have no CEL equivalent")
                raise Untranslatable(f"{token.text} is a smart variable or not a field name")
            return ("ref", match[1].lower(), match[2])
        if token.kind == "name":
            word = token.text.lower()
            if self.accept("("):
                args: list[tuple] = []
                if not self.accept(")"):
                    args.append(self.disjunction())
                    while self.accept(","):
                        args.append(self.disjunction())
                    self.expect(")")
                return ("call", word, args)
            return ("name", word)
        raise Untranslatable(f"unexpected '{token.text}' (position {token.pos + 1})")


def parse(text: str) -> tuple:
    return Parser(text).parse()


# --- CEL -----------------------------------------------------------------------------------------


def cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _number_text(text: str) -> str | None:
    """A REDCap number literal (or numeric string) as a CEL double literal, else None."""
    try:
        number = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    out = f"{number:f}"
    return out if "." in out else out + ".0"


def _int_text(text: str) -> str | None:
    return text.strip() if re.fullmatch(r"-?\d+", text.strip()) else None


class Emitter:
    """Writes a parsed rule as CEL. `fields`: REDCap field name -> FieldInfo."""

    def __init__(self, fields: dict[str, FieldInfo], skipped: dict[str, str] | None = None):
        self.fields = fields
        self.skipped = skipped or {}

    def field(self, name: str) -> FieldInfo:
        info = self.fields.get(name)
        if info is None:
            if name in self.skipped:
                raise Untranslatable(f"[{name}] is not imported ({self.skipped[name]})")
            raise Untranslatable(f"[{name}] is not a field of the dictionary")
        return info

    # Booleans (branching logic, conditions of if())

    def logic(self, node: tuple) -> str:
        kind = node[0]
        if kind == "bin" and node[1] in {"&&", "||"}:
            return f"{self._wrap_logic(node[2], node[1])} {node[1]} {self._wrap_logic(node[3], node[1])}"
        if kind == "not":
            return f"!({self.logic(node[1])})"
        if kind == "bin" and node[1] in {"==", "!=", "<", "<=", ">", ">="}:
            return self.comparison(node[1], node[2], node[3])
        if kind == "ref":
            info = self.field(node[1])
            if node[2] is not None:
                return self._checkbox(info, node[1], node[2], checked=True)
            if info.kind == "bool":
                return f"{info.cel_name} == true"
            raise Untranslatable(f"[{node[1]}] alone is not a condition (compare it to a value)")
        if kind == "name" and node[1] in {"true", "false"}:
            return node[1]
        if kind == "num" and node[1] in {"0", "1"}:
            return "true" if node[1] == "1" else "false"
        raise Untranslatable("the expression is not a condition")

    def _wrap_logic(self, node: tuple, parent: str) -> str:
        text = self.logic(node)
        if node[0] == "bin" and node[1] in {"&&", "||"} and node[1] != parent:
            return f"({text})"
        return text

    def _checkbox(self, info: FieldInfo, name: str, code: str, *, checked: bool) -> str:
        if info.kind not in {"checkbox", "checkbox_int"}:
            raise Untranslatable(f"[{name}({code})]: only checkbox fields take an option code")
        if info.kind == "checkbox_int":
            literal = _int_text(code)
            if literal is None:
                raise Untranslatable(f"[{name}({code})]: '{code}' is not one of the field's codes")
        else:
            literal = cel_string(code)
        if checked:
            return f"({info.cel_name} != null && {literal} in {info.cel_name})"
        return f"({info.cel_name} == null || !({literal} in {info.cel_name}))"

    def _literal_for(self, info: FieldInfo, name: str, node: tuple) -> str:
        """A literal compared with a field, in the type the engine stores for that field."""
        if node[0] == "neg" and node[1][0] == "num":
            node = ("str", "-" + node[1][1])
        text = node[1]
        if node[0] == "name" and text == "today":
            return "today"
        if text == "":
            return "null"
        if info.kind in NUMBER_KINDS:
            number = _number_text(text)
            if number is None:
                raise Untranslatable(f"[{name}] is a number; '{text}' is not")
            return number
        if info.kind == "choice_int":
            literal = _int_text(text)
            if literal is None:
                raise Untranslatable(f"[{name}] has no choice code '{text}'")
            return literal
        if info.kind == "bool":
            if text in {"1", "0"}:
                return "true" if text == "1" else "false"
            raise Untranslatable(f"[{name}] is yes (1) / no (0); '{text}' is neither")
        return cel_string(text)

    def comparison(self, op: str, left: tuple, right: tuple) -> str:
        literal_kinds = {"str", "num", "neg"}
        if right[0] == "ref" and left[0] in literal_kinds | {"name"}:  # "1" = [x] -> [x] = "1"
            flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            return self.comparison(flipped, right, left)
        if left[0] == "ref" and (right[0] in literal_kinds or right == ("name", "today")):
            name, code = left[1], left[2]
            info = self.field(name)
            if code is not None:
                value = right[1] if right[0] != "neg" else "-" + right[1][1]
                if op not in {"==", "!="} or value.strip() not in {"0", "1"}:
                    raise Untranslatable(f"[{name}({code})] is compared with = or <> to \"1\" (ticked) or \"0\"")
                checked = (value.strip() == "1") == (op == "==")
                return self._checkbox(info, name, code, checked=checked)
            if info.kind in {"checkbox", "checkbox_int"}:
                raise Untranslatable(f"[{name}] is a checkbox: name the option, [{name}(code)]")
            literal = self._literal_for(info, name, right)
            if literal == "null" and op not in {"==", "!="}:
                raise Untranslatable(f"[{name}] {op} \"\" has no meaning")
            is_date = info.kind in {"date", "datetime"} and right[0] == "str" and literal != "null"
            if is_date and not re.fullmatch(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?", right[1]):
                raise Untranslatable(f"[{name}] is compared with '{right[1]}', not a Y-M-D date")
            return f"{info.cel_name} {op} {literal}"
        if left[0] == "ref" and right[0] == "ref" and left[2] is None and right[2] is None:
            return f"{self.field(left[1]).cel_name} {op} {self.field(right[1]).cel_name}"
        # Arithmetic on either side (datediff(...) > 18, [a] + [b] = 10).
        return f"{self.number(left)} {op} {self.number(right)}"

    # Numbers (calculations, arithmetic inside conditions)

    def number(self, node: tuple) -> str:
        kind = node[0]
        if kind == "num":
            return _number_text(node[1]) or node[1]
        if kind == "str":
            number = _number_text(node[1])
            if number is None:
                raise Untranslatable(f"'{node[1]}' is used as a number")
            return number
        if kind == "neg":
            return f"-{self._wrap_number(node[1])}"
        if kind == "ref":
            name, code = node[1], node[2]
            info = self.field(name)
            if code is not None:
                return f"({self._checkbox(info, name, code, checked=True)} ? 1.0 : 0.0)"
            if info.kind == "double":
                return info.cel_name
            if info.kind in {"int", "choice_int"}:
                return f"double({info.cel_name})"
            if info.kind == "bool":
                return f"({info.cel_name} ? 1.0 : 0.0)"
            raise Untranslatable(f"[{name}] is not a number")
        if kind == "bin" and node[1] in {"+", "-", "*", "/"}:
            return f"{self._wrap_number(node[2])} {node[1]} {self._wrap_number(node[3])}"
        if kind == "bin" and node[1] == "^":
            exponent = node[3]
            if exponent[0] == "num" and re.fullmatch(r"[1-9]", exponent[1]):
                base = self._wrap_number(node[2])
                return "(" + " * ".join([base] * int(exponent[1])) + ")"
            raise Untranslatable("'^' with an exponent other than a whole number from 1 to 9 (CEL has no power)")
        if kind == "call":
            return self.call(node[1], node[2])
        if kind == "name" and node[1] in {"true", "false"}:
            return "1.0" if node[1] == "true" else "0.0"
        if kind == "bin" or kind == "not":
            return f"({self.logic(node)} ? 1.0 : 0.0)"
        raise Untranslatable(f"'{node[1]}' is not a number")

    def _wrap_number(self, node: tuple) -> str:
        text = self.number(node)
        if node[0] == "bin" or node[0] == "neg":
            return f"({text})"
        return text

    def value(self, node: tuple) -> str:
        """A branch of if(): blank stays null, numbers stay numbers."""
        if node[0] == "str" and node[1] == "":
            return "null"
        return self.number(node)

    def call(self, name: str, args: list[tuple]) -> str:
        if name == "if":
            if len(args) != 3:
                raise Untranslatable("if() takes 3 arguments")
            return f"({self.logic(args[0])} ? {self.value(args[1])} : {self.value(args[2])})"
        if name in {"round", "roundup", "rounddown"}:
            if len(args) not in {1, 2}:
                raise Untranslatable(f"{name}() takes 1 or 2 arguments")
            places = args[1] if len(args) == 2 else ("num", "0")
            if places[0] not in {"num", "str"} or _int_text(places[1]) is None:
                raise Untranslatable(f"{name}(): the number of decimals must be a whole number")
            if int(places[1]) == 0:  # whole numbers: no scaling
                return _ROUNDERS[name](f"({self.number(args[0])})")
            factor = _number_text(str(10 ** int(places[1])))
            scaled = f"({self.number(args[0])}) * {factor}"
            return f"{_ROUNDERS[name](scaled)} / {factor}"
        if name in {"sum", "min", "max", "mean"}:
            if not args:
                raise Untranslatable(f"{name}() needs arguments")
            items = []
            for arg in args:
                if arg[0] == "ref" and arg[2] is None and self.field(arg[1]).kind in NUMBER_KINDS | {"choice_int"}:
                    items.append(self.field(arg[1]).cel_name)  # raw: blanks are filtered out before double()
                else:
                    items.append(self.number(arg))
            values = f"[{', '.join(items)}].filter(v__, v__ != null).map(v__, double(v__))"
            if name == "mean":
                return f"(sum({values}) / double(size({values})))"
            return f"{name}({values})"
        if name == "abs":
            if len(args) != 1:
                raise Untranslatable("abs() takes 1 argument")
            inner = self.number(args[0])
            return f"max([{inner}, -({inner})])"
        if name == "datediff":
            return self.datediff(args)
        raise Untranslatable(f"function {name}() has no CEL equivalent in the CRF engine")

    def _timestamp(self, node: tuple) -> str:
        if node in {("name", "today"), ("str", "today")}:
            return "timestamp(today + 'T00:00:00Z')"
        if node[0] == "str" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", node[1]):
            return f"timestamp('{node[1]}T00:00:00Z')"
        if node[0] == "ref" and node[2] is None:
            info = self.field(node[1])
            if info.kind == "date":
                return f"timestamp({info.cel_name} + 'T00:00:00Z')"
            if info.kind == "datetime":
                return f"timestamp({info.cel_name})"
            raise Untranslatable(f"datediff(): [{node[1]}] is not a date or datetime field")
        if node in {("name", "now"), ("str", "now")}:
            raise Untranslatable("datediff() with 'now': the engine knows today's date, not the time")
        raise Untranslatable("datediff() reads dates: a date field, 'today' or a 'Y-M-D' date")

    def datediff(self, args: list[tuple]) -> str:
        if not 3 <= len(args) <= 5 or args[2][0] != "str" or args[2][1] not in DATEDIFF_UNITS:
            raise Untranslatable("datediff() needs two dates and a unit among y, M, d, h, m, s")
        signed = False
        for extra in args[3:]:
            if extra[0] == "name" and extra[1] in {"true", "false"}:
                signed = extra[1] == "true"
            elif extra[0] == "str" and extra[1] in {"ymd", "mdy", "dmy", "true", "false"}:
                signed = signed or extra[1] == "true"  # a date format (older REDCap): dates are stored Y-M-D here
            else:
                raise Untranslatable("datediff(): the 4th/5th arguments are a date format or true/false")
        seconds = f"double(({self._timestamp(args[1])} - {self._timestamp(args[0])}).getSeconds())"
        unit = DATEDIFF_UNITS[args[2][1]]
        value = seconds if unit == 1 else f"{seconds} / {unit}.0"
        return f"({value})" if signed else f"max([{value}, -({value})])"


def _floor(x: str) -> str:
    return f"(double(int({x})) - ({x} < double(int({x})) ? 1.0 : 0.0))"


def _ceil(x: str) -> str:
    return f"(double(int({x})) + ({x} > double(int({x})) ? 1.0 : 0.0))"


def _half_away(x: str) -> str:  # PHP's round(): halves away from zero
    return f"double(int({x} + ({x} >= 0.0 ? 0.5 : -0.5)))"


_ROUNDERS = {"round": _half_away, "roundup": _ceil, "rounddown": _floor}


def translate_logic(text: str, fields: dict[str, FieldInfo], skipped: dict[str, str] | None = None) -> str:
    """REDCap branching logic -> a CEL condition."""
    return Emitter(fields, skipped).logic(parse(text))


def translate_calc(
    text: str, fields: dict[str, FieldInfo], skipped: dict[str, str] | None = None
) -> tuple[str, int | None]:
    """A REDCap calculation -> (CEL returning a double, decimals to keep or None).

    An outer round(x, n) becomes the item's precision (the engine rounds half away from zero when it
    stores the value, as PHP's round() does), so the CEL stays readable."""
    tree = parse(text)
    emitter = Emitter(fields, skipped)
    if tree[0] == "call" and tree[1] == "round" and len(tree[2]) == 2:
        places = tree[2][1]
        if places[0] in {"num", "str"} and _int_text(places[1]) is not None and 0 <= int(places[1]) <= 10:
            return emitter.number(tree[2][0]), int(places[1])
    return emitter.number(tree), None
