"""A pdfium view of a PDF's bytes: page rendering (for OCR), image coverage and a second text layer.

pypdf reads the text; pdfium (pypdfium2) is opened lazily, only for pages whose text layer is
missing or garbled, so text PDFs never pay for it. pypdfium2 is imported inside the methods.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

OCR_DPI = 180  # 144 dpi merged words ("meto"), 200 dpi missed a line of the Slerexe letter
MAX_RENDER_SIDE = 3000  # pixels; rapidocr shrinks larger images anyway, so don't waste memory


class PdfiumView:
    """Lazily opened pdfium document over the same bytes pypdf read.

    >>> import io, pypdf
    >>> writer, buf = pypdf.PdfWriter(), io.BytesIO()
    >>> _ = writer.add_blank_page(612, 792); _ = writer.write(buf)
    >>> view = PdfiumView(buf.getvalue(), None)
    >>> view.image_share(0), view.render(0, dpi=72).size, view.text(0)
    (0.0, (612, 792), '')
    >>> view.close()
    """

    def __init__(self, data: bytes, password: str | None) -> None:
        self._data = data
        self._password = password
        self._doc: Any = None
        self.error: str | None = None  # why pdfium could not open the file, once it tried

    def _document(self) -> Any:
        if self._doc is None and self.error is None:
            import pypdfium2 as pdfium

            try:
                self._doc = pdfium.PdfDocument(self._data, password=self._password)
            except pdfium.PdfiumError as exc:
                self.error = str(exc)
        if self._doc is None:
            raise RuntimeError(f"pdfium cannot open the file ({self.error})")
        return self._doc

    def text(self, index: int) -> str:
        """pdfium's text layer of page ``index`` (0-based)."""
        page = self._document()[index]
        textpage = page.get_textpage()
        try:
            return str(textpage.get_text_range())
        finally:
            textpage.close()
            page.close()

    def image_share(self, index: int) -> float:
        """Share of the page area covered by images (0..1; overlapping images may sum past 1)."""
        import pypdfium2.raw as pdfium_c

        page = self._document()[index]
        try:
            width, height = page.get_size()
            area = 0.0
            for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=8):
                left, bottom, right, top = obj.get_bounds()
                w = max(0.0, min(right, width) - max(left, 0.0))
                h = max(0.0, min(top, height) - max(bottom, 0.0))
                area += w * h
            return area / (width * height) if width * height > 0 else 0.0
        finally:
            page.close()

    def render(self, index: int, dpi: int = OCR_DPI) -> Image.Image:
        """Render page ``index`` as an RGB image at ``dpi`` (capped at MAX_RENDER_SIDE pixels)."""
        page = self._document()[index]
        try:
            width, height = page.get_size()  # PDF points, 1/72 inch
            scale = min(dpi / 72, MAX_RENDER_SIDE / max(width, height, 1.0))
            return page.render(scale=scale).to_pil().convert("RGB")
        finally:
            page.close()

    def close(self) -> None:
        if self._doc is not None:
            self._doc.close()
            self._doc = None
