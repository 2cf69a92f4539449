"""Test helper: assemble a minimal PDF file from its objects (numbered 1.. in order), xref and trailer."""
from __future__ import annotations


def assemble(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    """The bytes of a PDF whose object n is ``objects[n - 1]`` (object 1: the catalog), with a valid
    cross-reference table; ``trailer_extra`` is added to the trailer dictionary (e.g. ``b" /Info 9 0 R"``)."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer_extra, xref)
    return bytes(out)
