"""Django forms built from a CRF schema (one class per CRF version, cached).

Form fields only parse (type, format, number of decimals); every rule of the CRF, `required`
included, is applied by `engine.validate_answers`, so the page, the services and imports agree.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from trials.protocol.engine import ROW_ID, CrfSchema, Item, Outcome, plain, validate_answers
from trials.visits import files as file_items

_FORM_CLASSES: dict[tuple[int, int], type[forms.Form]] = {}
_ROW_FORMSETS: dict[tuple[int, str], type[forms.BaseFormSet]] = {}

YES_NO = (("true", _("Yes")), ("false", _("No")))


def _coerce_code(choices: tuple) -> Any:  # noqa: ANN401
    codes = {str(code): code for code, _label in choices}

    def coerce(value: str) -> Any:  # noqa: ANN401
        try:
            return codes[value]
        except KeyError:
            raise ValueError(value) from None  # TypedChoiceField turns it into "Select a valid choice."

    return coerce


def _number_attrs(item: Item) -> dict:
    attrs: dict[str, Any] = {}
    if item.min is not None:
        attrs["min"] = plain(item.min)
    if item.max is not None:
        attrs["max"] = plain(item.max)
    if item.type == "decimal":
        attrs["step"] = plain(Decimal(1).scaleb(-item.precision)) if item.precision is not None else "any"
    return attrs


def form_field(item: Item) -> forms.Field | None:
    """The parsing field of one item (None for items that take no input)."""
    common = {"label": item.label, "required": False, "help_text": item.help}
    kind = item.type
    if kind == "text":
        return forms.CharField(max_length=2000, **common)
    if kind == "long_text":
        return forms.CharField(max_length=20000, widget=forms.Textarea(attrs={"rows": 3}), **common)
    if kind == "integer":
        return forms.IntegerField(widget=forms.NumberInput(attrs=_number_attrs(item)), **common)
    if kind == "decimal":
        return forms.DecimalField(
            decimal_places=item.precision, max_digits=20, widget=forms.NumberInput(attrs=_number_attrs(item)), **common
        )
    if kind == "date":
        # ISO only (what <input type=date> sends): 01/02/1960 must not mean a different day per language.
        return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), input_formats=["%Y-%m-%d"], **common)
    if kind == "datetime":
        return forms.DateTimeField(
            widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
            **common,
        )
    if kind == "yes_no":
        return forms.TypedChoiceField(
            choices=YES_NO, coerce=lambda v: v == "true", empty_value=None,
            widget=forms.RadioSelect(attrs={"class": "edc-inline"}), **common,
        )
    if kind == "single_choice" or (kind == "scale" and item.choices):
        choices = tuple((str(code), label) for code, label in item.choices)
        dropdown = item.widget == "dropdown" or (item.widget is None and len(choices) > 6)
        widget = forms.Select(choices=(("", "—"), *choices)) if dropdown else forms.RadioSelect(
            attrs={"class": "edc-inline" if item.widget == "inline_radio" else ""}
        )
        return forms.TypedChoiceField(
            choices=(("", "—"), *choices) if dropdown else choices, coerce=_coerce_code(item.choices),
            empty_value=None, widget=widget, **common,
        )
    if kind == "multiple_choice":
        return forms.TypedMultipleChoiceField(
            choices=tuple((str(code), label) for code, label in item.choices), coerce=_coerce_code(item.choices),
            widget=forms.CheckboxSelectMultiple, **common,
        )
    if kind == "scale":
        slider = item.widget == "slider" or (item.max is not None and item.min is not None and item.max - item.min > 10)
        if slider:
            # A number input carries the value; the page adds a range slider beside it as a visual aid.
            # A bare <input type=range> would always post a value (its midpoint) even when untouched.
            attrs = {**_number_attrs(item), "step": 1, "data-edc-slider": "1"}
            return forms.IntegerField(widget=forms.NumberInput(attrs=attrs), **common)
        points = [(str(n), str(n)) for n in range(int(item.min or 0), int(item.max or 10) + 1)]
        return forms.TypedChoiceField(
            choices=points, coerce=int, empty_value=None, widget=forms.RadioSelect(attrs={"class": "edc-inline"}), **common
        )
    if kind == "file":
        # Parsing only: the kind and size are checked from the bytes in CrfSubmission.validate.
        return forms.FileField(
            widget=forms.FileInput(attrs={"accept": file_items.accept_attribute(item)}), allow_empty_file=True, **common,
        )
    return None


def missing_state(form: forms.Form, item: Item) -> dict | None:
    """The missing-data code and reason of a required item, as posted or as stored.

    They are read straight from the data instead of being form fields: a 100-item CRF would
    otherwise carry 200 more fields to copy and clean on every request (docs/benchmarks.md).
    """
    if not item.required:
        return None
    code_name, reason_name = form.add_prefix(f"{item.name}__missing"), form.add_prefix(f"{item.name}__missing_reason")
    if form.is_bound:
        code, reason = form.data.get(code_name, ""), form.data.get(reason_name, "")
    else:
        code, reason = form.initial.get(f"{item.name}__missing", ""), form.initial.get(f"{item.name}__missing_reason", "")
    return {"code_name": code_name, "reason_name": reason_name, "code": code or "", "reason": reason or ""}


def _style(field: forms.Field) -> forms.Field:
    """Bootstrap classes on the widget (the page renders inputs itself, item by item)."""
    widget = field.widget
    if isinstance(widget, (forms.RadioSelect, forms.CheckboxSelectMultiple)):
        css = "form-check-input"
    elif isinstance(widget, forms.Select):
        css = "form-select"
    else:
        css = "form-control"
    widget.attrs["class"] = css
    return field


def _build(items: tuple[Item, ...], name: str, extra: dict | None = None) -> type[forms.Form]:
    fields: dict[str, forms.Field] = dict(extra or {})
    for item in items:
        field = form_field(item)
        if field is not None:
            fields[item.name] = _style(field)
    return type(name, (forms.Form,), fields)


def form_class_for(schema: CrfSchema) -> type[forms.Form]:
    """The form class of a CRF version's top-level items (cached: versions never change)."""
    key = (schema.crf_id, schema.version)
    if key not in _FORM_CLASSES:
        _FORM_CLASSES[key] = _build(schema.items, f"{schema.code}V{schema.version}Form")
    return _FORM_CLASSES[key]


def row_formset_for(schema: CrfSchema, group: Item) -> type[forms.BaseFormSet]:
    """The formset of a repeating group: one form per row, with the row's stable identity."""
    key = (schema.crf_id, group.name)
    if key not in _ROW_FORMSETS:
        row_form = _build(group.children, f"{schema.code}{group.name}Row", {ROW_ID: forms.CharField(required=False, widget=forms.HiddenInput)})
        # Never build more rows than the CRF allows, whatever TOTAL_FORMS says (a forged count
        # would otherwise make the server build and render thousands of rows).
        limit = group.max_rows or 200
        _ROW_FORMSETS[key] = forms.formset_factory(
            row_form, extra=0, can_delete=True, max_num=limit, absolute_max=limit, validate_max=True
        )
    return _ROW_FORMSETS[key]


def _missing_from(form: forms.Form, items: tuple[Item, ...]) -> dict:
    out = {}
    for item in items:
        state = missing_state(form, item)
        if state and state["code"]:
            out[item.name] = {"code": state["code"], "reason": state["reason"]}
    return out


def initial_from(schema: CrfSchema, answers: dict, missing: dict) -> tuple[dict, dict[str, list[dict]]]:
    """Form initial data from stored answers (the inverse of engine.to_storage)."""
    initial: dict[str, Any] = {}
    rows: dict[str, list[dict]] = {}
    for item in schema.items:
        if item.type == "repeating_group":
            group_missing = missing.get(item.name) or {}
            rows[item.name] = [
                {**_initial_values(item.children, row), **_initial_missing(item.children, group_missing.get(row.get(ROW_ID)) or {}), ROW_ID: row.get(ROW_ID)}
                for row in answers.get(item.name) or []
            ]
    initial.update(_initial_values(schema.items, answers))
    initial.update(_initial_missing(schema.items, missing))
    return initial, rows


def _initial_values(items: tuple[Item, ...], answers: dict) -> dict:
    out = {}
    for item in items:
        value = answers.get(item.name)
        if value is None or not item.is_input or item.type == "file":
            continue  # a file input starts empty: the current file is shown beside it
        if item.type == "yes_no":
            value = "true" if value else "false"
        elif item.type in {"single_choice", "scale"}:
            value = str(value)  # choices are matched as strings
        elif item.type == "multiple_choice":
            value = [str(v) for v in value]
        elif item.type == "datetime":
            value = str(value)[:16]
        out[item.name] = value
    return out


def _initial_missing(items: tuple[Item, ...], missing: dict) -> dict:
    out = {}
    for item in items:
        if item.name in missing and isinstance(missing[item.name], dict) and "code" in missing[item.name]:
            out[f"{item.name}__missing"] = missing[item.name]["code"]
            out[f"{item.name}__missing_reason"] = missing[item.name].get("reason", "")
    return out


class CrfSubmission:
    """A bound CRF page: the form, one formset per repeating group, and the validation outcome."""

    def __init__(
        self, schema: CrfSchema, *, data=None, answers: dict | None = None, missing: dict | None = None,  # noqa: ANN001
        context: dict | None = None, known_row_ids: set[str] | None = None, files=None, stored: dict | None = None,  # noqa: ANN001
    ):
        self.schema = schema
        self.context = context or {}
        self.known_row_ids = known_row_ids
        # `files`: the request's uploads; `stored`: the entry's saved answers, whose files an item
        # keeps when nothing new is uploaded (a file input never posts the current file back).
        self.stored_files = file_items.file_answers(schema, stored or {})
        initial, rows = initial_from(schema, answers or {}, missing or {})
        self.form = form_class_for(schema)(data=data, files=files, initial=initial, prefix="crf")
        self.formsets = {
            group.name: row_formset_for(schema, group)(data=data, files=files, initial=rows.get(group.name), prefix=group.name)
            for group in schema.groups
        }
        self.outcome: Outcome | None = None

    @property
    def is_bound(self) -> bool:
        return self.form.is_bound

    def evaluate_stored(self, answers: dict, missing: dict) -> Outcome:
        """Branching and scores of stored answers, for showing an entry (no messages on fields)."""
        by_index = dict(missing)
        for group in self.schema.groups:
            rows = answers.get(group.name) or []
            stored = missing.get(group.name) or {}
            by_index[group.name] = {i: stored.get(row.get(ROW_ID), {}) for i, row in enumerate(rows)}
        self.outcome = validate_answers(self.schema, answers, missing=by_index, context=self.context)
        self.outcome.errors, self.outcome.row_errors, self.outcome.warnings = {}, {}, []
        return self.outcome

    def validate(self) -> Outcome:
        """Parse the submission, apply the CRF's rules, and put every message on its field."""
        parsed_ok = self.form.is_valid()
        cleaned = getattr(self.form, "cleaned_data", {})
        raw = {name: cleaned.get(name) for name in self.form.fields}
        self._file_values(self.form, self.schema.items, raw, "", "")
        missing = _missing_from(self.form, self.schema.items)
        formsets_ok = True
        for group in self.schema.groups:
            formset = self.formsets[group.name]
            valid = formset.is_valid()
            formsets_ok = formsets_ok and valid
            rows, row_missing = [], {}
            for form in formset.forms:
                data = getattr(form, "cleaned_data", {}) or {}
                if data.get("DELETE"):
                    continue
                row_missing[len(rows)] = _missing_from(form, group.children)
                row = {**{c.name: data.get(c.name) for c in group.children}, ROW_ID: data.get(ROW_ID)}
                self._file_values(form, group.children, row, group.name, str(data.get(ROW_ID) or ""))
                rows.append(row)
            raw[group.name] = rows
            missing[group.name] = row_missing
        outcome = validate_answers(
            self.schema, raw, missing=missing, context=self.context, known_row_ids=self.known_row_ids
        )
        # A hidden item is cleared, so what it held (even unreadable) neither blocks nor is kept.
        for name in outcome.hidden:
            self.form.errors.pop(name, None)
        for group in self.schema.groups:
            live = [f for f in self.formsets[group.name].forms if not (getattr(f, "cleaned_data", {}) or {}).get("DELETE")]
            for index, form in enumerate(live):
                for name in (outcome.hidden_in_rows.get(group.name) or {}).get(index, ()):
                    form.errors.pop(name, None)
        parsed_ok = not self.form.errors
        formsets_ok = all(
            not formset.non_form_errors() and not any(f.errors for f in formset.forms) for formset in self.formsets.values()
        )
        for name, messages in outcome.errors.items():
            target = name if name in self.form.fields else None
            for message in messages:
                if target is None and name in self.formsets:
                    self.formsets[name]._non_form_errors = self.formsets[name].error_class([*self.formsets[name].non_form_errors(), message])
                else:
                    self.form.add_error(target, message)
        for group, by_row in outcome.row_errors.items():
            live = [f for f in self.formsets[group].forms if not (getattr(f, "cleaned_data", {}) or {}).get("DELETE")]
            for index, by_field in by_row.items():
                for name, messages in by_field.items():
                    for message in messages:
                        live[index].add_error(name if name in live[index].fields else None, message)
        if not (parsed_ok and formsets_ok):
            outcome.errors.setdefault("__parse__", [str(_("Some answers could not be read; see the marked items."))])
        self.outcome = outcome
        return outcome

    def _file_values(self, form: forms.Form, items: tuple[Item, ...], values: dict, group: str, row_id: str) -> None:
        """A file item's value: a new upload that passes the item's checks (kind from the bytes,
        size), else the file already saved; a refused upload is a message on the field and the
        saved file is kept."""
        for item in items:
            if item.type != "file":
                continue
            uploaded = values.get(item.name)
            current = self.stored_files.get((group, row_id, item.name))
            values[item.name] = current
            if uploaded is None or form.errors.get(item.name):
                continue
            upload, problem = file_items.check_upload(item, uploaded)
            if problem:
                form.add_error(item.name, problem)
            else:
                values[item.name] = upload.pending_answer()

    def clear_messages(self) -> None:
        """Forget messages on fields (a page re-shown while typing is not a judgement yet)."""
        self.form._errors = {}  # noqa: SLF001
        for formset in self.formsets.values():
            formset._non_form_errors = formset.error_class()  # noqa: SLF001
            for form in formset.forms:
                form._errors = {}  # noqa: SLF001
