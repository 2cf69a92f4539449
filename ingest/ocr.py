"""OCR of rendered pages with rapidocr-onnxruntime (offline PP-OCRv4 Chinese/English models).

rapidocr (and onnxruntime, OpenCV) is imported inside ``_engine`` on the first OCR call only.
"""
from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from common import cjk

if TYPE_CHECKING:
    from PIL import Image

_CJK_EDGE = re.compile(f"[{cjk.SPACELESS}{cjk.PUNCT}]")  # characters that join without a space


@dataclass(frozen=True)
class OcrBox:
    """One recognised text box, in image pixels (y grows downwards)."""

    left: float
    top: float
    right: float
    bottom: float
    text: str

    @property
    def height(self) -> float:
        return max(1.0, self.bottom - self.top)


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR  # heavy: onnxruntime + OpenCV + model load (~2 s)

    return RapidOCR()


def _join(left: str, right: str) -> str:
    """Join two pieces of one line: no space between CJK characters, one space otherwise."""
    if not left or not right:
        return left + right
    sep = "" if _CJK_EDGE.match(left[-1]) and _CJK_EDGE.match(right[0]) else " "
    return left + sep + right


def _group_lines(boxes: Sequence[OcrBox]) -> list[list[OcrBox]]:
    """Group boxes into lines: a box joins the current line when it overlaps it vertically by at
    least half the smaller height (so a tall vertical-text box and a caption beside it share one)."""
    lines: list[list[OcrBox]] = []
    top = bottom = 0.0
    for box in sorted(boxes, key=lambda b: (b.top, b.left)):
        if lines:
            overlap = min(bottom, box.bottom) - max(top, box.top)
            smaller = min(box.height, min(b.height for b in lines[-1]))
            if overlap >= 0.5 * smaller:
                lines[-1].append(box)
                top, bottom = min(top, box.top), max(bottom, box.bottom)
                continue
        lines.append([box])
        top, bottom = box.top, box.bottom
    return lines


def layout_text(boxes: Sequence[OcrBox]) -> str:
    """Order OCR boxes top-to-bottom, left-to-right and join them into text.

    Boxes of one line are joined with a space (none between CJK characters); lines with "\\n"; a
    vertical gap above 0.8 line heights starts a new paragraph ("\\n\\n").

    >>> layout_text([OcrBox(300, 10, 400, 30, "world"), OcrBox(10, 12, 100, 31, "Hello"),
    ...              OcrBox(10, 40, 200, 60, "横向文本"), OcrBox(210, 41, 260, 60, "框"),
    ...              OcrBox(10, 120, 90, 140, "Next")])
    'Hello world\\n横向文本框\\n\\nNext'
    """
    lines = _group_lines(boxes)
    if not lines:
        return ""
    typical = statistics.median(b.height for line in lines for b in line)
    out: list[str] = []
    prev_bottom: float | None = None
    for line in lines:
        text = ""
        for box in sorted(line, key=lambda b: b.left):
            text = _join(text, box.text.strip())
        line_top = min(b.top for b in line)
        if prev_bottom is not None:
            out.append("\n\n" if line_top - prev_bottom > 0.8 * typical else "\n")
        out.append(text)
        prev_bottom = max(b.bottom for b in line)
    return "".join(out)


def ocr_image(image: Image.Image) -> str:
    """Recognise the text of a page image; returns laid-out text ("" when nothing is found).

    >>> from PIL import Image
    >>> ocr_image(Image.new("RGB", (200, 100), "white"))
    ''
    """
    import numpy as np

    result, _ = _engine()(np.asarray(image.convert("RGB")))
    boxes = []
    for points, text, _score in result or ():
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        if str(text).strip():
            boxes.append(OcrBox(min(xs), min(ys), max(xs), max(ys), str(text)))
    return layout_text(boxes)
