"""Filled PDF form fields -> page text: the values typed into a form, next to their printed labels.

Filled forms often keep what was typed only as AcroForm field values (``/V`` of the widget
annotations): the content stream holds the labels alone, so the text layer reads "Serial number:"
without the number. pypdf's ``reader.get_fields()`` gives neither page nor position, so each page's
widgets are read here; a text or choice field's value goes after the printed label left of its box,
a checkbox or radio value ("/Yes" -> "Yes") becomes a "label: value" line at the page's end, as does
a value whose label is not found. A value the text layer already shows (a flattened form) is not
repeated.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ingest.records import Page
from ingest.text import normalize_text

_MAX_FIELD_DEPTH = 32  # /Parent chain length; deeper is a loop in a damaged file
_LABEL_SLACK = 4.0  # points a label's baseline may sit above or below the field's box


@dataclass(frozen=True)
class _Field:
    label: str  # the field's tooltip (/TU) or the last part of its name, for a "label: value" line
    value: str
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 in page points; None for buttons


def _field_entries(widget: Any) -> tuple[str, dict[str, Any]]:
    """A widget's full field name ("form.serial") and its /FT, /V, /TU, inherited down /Parent."""
    entries: dict[str, Any] = {}
    names: list[str] = []
    node = widget
    for _ in range(_MAX_FIELD_DEPTH):
        entries.update({key: node[key] for key in ("/FT", "/V", "/TU") if key in node and key not in entries})
        names += [str(node["/T"])] if "/T" in node else []
        if "/Parent" not in node:
            break
        node = node["/Parent"].get_object()
    return ".".join(reversed(names)), entries


def _field_text(value: Any, kind: object) -> str:
    """A field value as text: names lose their slash ("/Yes" -> "Yes"), an unchecked box is ""."""
    from pypdf.generic import ArrayObject, NameObject

    if isinstance(value, ArrayObject):  # a multiple-choice list
        return ", ".join(t for t in (_field_text(v.get_object(), kind) for v in value) if t)
    text = str(value)[1:] if isinstance(value, NameObject) else str(value)
    if kind == "/Btn" and text == "Off":
        return ""
    return " ".join(normalize_text(text).split())


def _page_fields(page: Any) -> list[_Field]:
    """The filled fields shown on a pypdf ``page``, once per field (radio buttons share one)."""
    fields: dict[str, _Field] = {}
    for ref in page["/Annots"] if "/Annots" in page else []:  # [] resolves indirect objects, .get() does not
        widget = ref.get_object()
        if "/Subtype" not in widget or widget["/Subtype"] != "/Widget":
            continue
        name, entries = _field_entries(widget)
        kind = entries.get("/FT")
        value = _field_text(entries["/V"].get_object(), kind) if "/V" in entries else ""
        if not value or name in fields or kind == "/Sig":
            continue
        label = " ".join(str(entries.get("/TU") or name.rsplit(".", 1)[-1]).replace("_", " ").split())
        x0, y0, x1, y1 = (float(v) for v in (widget["/Rect"] if "/Rect" in widget else (0, 0, 0, 0)))
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)) if kind != "/Btn" and x1 != x0 else None
        fields[name] = _Field(label or name, value, box)
    return list(fields.values())


def _text_runs(page: Any) -> list[tuple[float, float, str]]:
    """(x, y, text) of each text run of a pypdf ``page``, in page points (text space through the CTM)."""
    runs: list[tuple[float, float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: object) -> None:
        if text.strip():
            x, y = tm[4], tm[5]
            runs.append((x * cm[0] + y * cm[2] + cm[4], x * cm[1] + y * cm[3] + cm[5], text.strip()))

    page.extract_text(visitor_text=visit)
    return runs


def _printed_label(box: tuple[float, float, float, float], runs: list[tuple[float, float, str]]) -> str | None:
    """The text run nearest the left of a field's box on its line (its printed label), normalised."""
    beside = [(x, text) for x, y, text in runs if x < box[0] and box[1] - _LABEL_SLACK <= y <= box[3] + _LABEL_SLACK]
    return normalize_text(max(beside)[1].splitlines()[-1]) if beside else None


def _fill_in(text: str, field: _Field, printed: str | None, nth: int) -> str:
    """``text`` with the value after the ``nth`` (0-based) occurrence of its printed label, else with
    a "label: value" line appended; unchanged when the text layer already shows the value."""
    line = f"{field.label}: {field.value}"
    if line in text or (field.box and re.search(rf"(?<!\w){re.escape(field.value)}(?!\w)", text)):
        return text  # a flattened form, or a producer that also drew the value
    at = -1
    for _ in range(nth + 1 if printed else 0):
        at = text.find(printed, at + 1)  # type: ignore[arg-type]
        if at < 0:
            break
    if printed and at >= 0:
        end = at + len(printed)
        return f"{text[:end]} {field.value}{text[end:]}"
    return f"{text}\n{line}".strip()


def _with_form_values(reader: object, page: Page) -> Page:
    """``page`` with the values of the filled form fields shown on it (see ``_fill_in``)."""
    fields = _page_fields(reader.pages[page.number - 1])  # type: ignore[attr-defined]
    if not fields:
        return page
    runs = _text_runs(reader.pages[page.number - 1]) if any(f.box for f in fields) else []  # type: ignore[attr-defined]
    seen: Counter[str | None] = Counter()
    text = page.text
    for field in sorted(fields, key=lambda f: (-f.box[3], f.box[0]) if f.box else (math.inf, 0.0)):
        printed = _printed_label(field.box, runs) if field.box else None
        text = _fill_in(text, field, printed, seen[printed])  # the same label twice: top to bottom
        seen[printed] += 1
    return replace(page, text=text)


def add_form_values(reader: object, pages: Sequence[Page]) -> tuple[list[Page], list[str]]:
    """Each page with its filled form fields' values in its text; returns (pages, warnings).

    ``reader`` is the (decrypted) pypdf reader of the document, ``pages`` its pages as read (numbers
    1-based). A page whose form cannot be read keeps its text, with a warning naming the page.

    >>> import io, pypdf
    >>> from pypdf.generic import DictionaryObject as D, NameObject as N, TextStringObject as T
    >>> writer, buf = pypdf.PdfWriter(), io.BytesIO()
    >>> _ = writer.add_blank_page(612, 792)
    >>> _ = writer.add_annotation(0, D({N("/Subtype"): N("/Widget"), N("/T"): T("serial_number"),
    ...                                 N("/V"): T("HV320-88412")}))
    >>> _ = writer.write(buf)
    >>> add_form_values(pypdf.PdfReader(buf), [Page(1, "Registration card")])
    ([Page(number=1, text='Registration card\\nserial number: HV320-88412', ocr=False)], [])
    """
    out: list[Page] = []
    warnings: list[str] = []
    for page in pages:
        try:
            out.append(_with_form_values(reader, page))
        except Exception as exc:  # a damaged annotation or field dictionary costs only the values
            out.append(page)
            warnings.append(f"page {page.number}: its form field values could not be read "
                            f"({type(exc).__name__}: {exc})")
    return out, warnings
