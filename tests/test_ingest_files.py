"""ingest.files (paths, globs, folders), ingest.load doctests, the package's import hygiene (file hash: test_common)."""
from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import files, load
from ingest.files import PathProblem, expand_paths

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for name in ("a.pdf", "B.PDF", "notes.md", "readme.markdown", "x.txt", "sub/deep/c.pdf", "sub/d.odt",
                 ".hidden/e.pdf", "sub/.f.md", "empty/.keep"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return tmp_path


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root.resolve()).as_posix() for p in paths]


def test_folder_is_recursive_supported_only_and_skips_hidden(tree: Path) -> None:
    paths, problems = expand_paths([str(tree)])
    assert rel(paths, tree) == ["B.PDF", "a.pdf", "notes.md", "readme.markdown", "sub/deep/c.pdf", "x.txt"]
    assert problems == [] and all(p.is_absolute() for p in paths)


def test_globs_files_and_duplicates(tree: Path) -> None:
    args = [str(tree / "*.pdf"), str(tree / "**" / "*.pdf"), str(tree / "a.pdf"), str(tree / "sub" / ".." / "a.pdf")]
    paths, problems = expand_paths(args)
    assert rel(paths, tree) == ["a.pdf", "sub/deep/c.pdf"] and problems == []  # glob suffix matching is exact
    paths, _ = expand_paths([str(tree / "*")])  # a glob matching folders expands them too
    assert "sub/deep/c.pdf" in rel(paths, tree) and "sub/d.odt" not in rel(paths, tree)


def test_every_problem_is_reported(tree: Path) -> None:
    args = [str(tree / "x*.pdf"), str(tree / "missing.pdf"), str(tree / "sub" / "d.odt"), str(tree / "empty"),
            str(tree / "sub" / "*.odt"), str(tree / "a.pdf")]
    paths, problems = expand_paths(args)
    names = ", ".join(files.DEFAULT_SUFFIXES)
    assert names.startswith(".pdf, .txt, .md, .markdown, .docx, .pptx, .xlsx, .csv, .html, .htm, .epub, .png")
    assert rel(paths, tree) == ["a.pdf"]
    assert problems == [PathProblem(path=arg, reason=reason) for arg, reason in zip(args, [
        f"no file matches {str(tree / 'x*.pdf')!r}",
        f"{str(tree / 'missing.pdf')!r} does not exist",
        f"{str(tree / 'sub' / 'd.odt')!r} is not a supported file type (supported: {names})",
        f"folder {str(tree / 'empty')!r} holds no {names} files",
        f"no {names} file matches {str(tree / 'sub' / '*.odt')!r}",
    ])]


def test_a_problem_names_its_argument_as_given(tmp_path: Path) -> None:
    """The argument travels as data, so a quote in a name cannot garble it (it was parsed
    back out of the message text before)."""
    odd = str(tmp_path / "it's missing.pdf")
    _, problems = expand_paths([odd])
    assert [p.path for p in problems] == [odd] and "does not exist" in problems[0].reason


def test_custom_suffixes_with_or_without_dot(tree: Path) -> None:
    paths, problems = expand_paths([str(tree)], suffixes=("odt", ".TXT"))
    assert rel(paths, tree) == ["sub/d.odt", "x.txt"] and problems == []


def test_relative_arguments_resolve(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "sub")
    paths, problems = expand_paths(["deep", "../a.pdf", "**/*.pdf"])
    assert rel(paths, tree) == ["a.pdf", "sub/deep/c.pdf"] and problems == []


def test_doctests() -> None:
    for module in (files, load):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_importing_ingest_stays_light() -> None:
    code = ("import sys, ingest.load, ingest.chunk, ingest.files, ingest.ocr, ingest.render\n"
            "heavy = {'torch', 'transformers', 'sentence_transformers', 'faiss', 'index', 'rapidocr_onnxruntime',\n"
            "         'onnxruntime', 'cv2', 'pypdfium2', 'tokenizers', 'numpy', 'PIL'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_links_pipes_and_loops_get_their_own_reason_and_globs_do_not_follow_loops(tmp_path: Path) -> None:
    """A `**` glob walks like a folder (symbolic links to folders are not entered, so a link back up
    cannot loop); entries that are no files (a looping or dangling link, a FIFO) are listed with why;
    one named directly says why too, never "does not exist"."""
    import os

    from ingest.files import expand

    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("a")
    (docs / "sub" / "b.md").write_text("b")
    os.symlink(docs, docs / "sub" / "up")  # a loop through a folder link
    os.symlink(docs / "self.md", docs / "self.md")  # a file link that loops
    os.symlink(docs / "gone.md", docs / "dangling.md")
    os.mkfifo(docs / "pipe.md")
    for args in ([str(docs)], [str(docs / "**" / "*.md")]):
        found = expand(args)
        assert [p.relative_to(docs).as_posix() for p in found.paths] == ["a.md", "sub/b.md"], args
        reasons = {Path(p.path).name: p.reason for p in found.special}
        assert reasons == {"self.md": f"'{docs / 'self.md'}' is a symbolic link that loops",
                           "dangling.md": f"'{docs / 'dangling.md'}' is a symbolic link to nothing (its target "
                                          "does not exist)",
                           "pipe.md": f"'{docs / 'pipe.md'}' is a named pipe (FIFO), not a file"}, args
    named = expand([str(docs / "pipe.md"), str(docs / "self.md")]).problems
    assert [p.reason.split("' ")[1] for p in named] == ["is a named pipe (FIFO), not a file",
                                                         "is a symbolic link that loops"]
