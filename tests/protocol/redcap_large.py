"""A generated REDCap data dictionary of real-world size (used by the import test and the benchmark):
`forms` instruments of 50 fields each, mixing every common type, with branching logic on 4 of 5
fields and a calculation per instrument. Written with REDCap's human headers, as its UI exports."""

import csv
from pathlib import Path

HEADERS = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
    "Matrix Ranking?", "Field Annotation",
]


def write_large_dictionary(path: Path, forms: int = 12) -> dict[str, int]:
    """Write the dictionary; returns how many fields and rules (branching + calculations) it has."""
    rows = [["record_id", "form_0", "", "text", "Record ID"] + [""] * 13]
    fields = rules = 0
    for f in range(forms):
        form = f"form_{f}"
        for i in range(50):
            name = f"f{f}_{i}"
            kind = i % 5
            row = [name, form, f"Part {i // 10 + 1}" if i % 10 == 0 else "", "", f"Question {i} of form {f} – ‘{name}’"] + [""] * 13
            if kind == 0:
                row[3], row[5] = "radio", "0, No | 1, Yes | 9, Unknown"
            elif kind == 1:
                row[3], row[7], row[8], row[9] = "text", "integer", "0", "100"
            elif kind == 2:
                row[3], row[5] = "checkbox", "1, A | 2, B | 3, C"
            elif kind == 3:
                row[3], row[7], row[8] = "text", "date_ymd", "2000-01-01"
            else:
                row[3], row[7], row[8] = "text", "number", "0,5"
            base = f"f{f}_{i - i % 5}"  # the radio of this group of five
            if kind == 1:
                row[11] = f"[{base}] = '1'"
            elif kind == 2:
                row[11] = f"[{base}] = '1' and [f{f}_{i - 1}] > 10"
            elif kind == 3:
                row[11] = f"[f{f}_{i - 1}(2)] = '1' or [{base}] <> '0'"
            elif kind == 4:
                row[11] = f"not([{base}] = '9') and datediff([f{f}_{i - 1}], 'today', 'y') < 5"
            rules += bool(row[11])
            fields += 1
            rows.append(row)
        rows.append([f"calc_{f}", form, "", "calc", "Total", f"sum([f{f}_1],[f{f}_6],[f{f}_11]) / 3", "", "", "", "", "", "", "", "", "", "", "", ""])
        fields += 1
        rules += 1
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        writer.writerows(rows)
    return {"fields": fields, "rules": rules}
