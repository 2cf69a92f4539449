"""Documents -> pages -> chunks: PDF/text loading, OCR, token-bounded chunking."""
