"""Tests for esamp.data_books (Gutenberg stripping, chapter splitting, continuation prompts)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from esamp.data_books import (
    BookPrompt,
    continuation_prompt,
    load_book_passages,
    load_book_prompts,
    read_book,
    split_passages,
    strip_gutenberg,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "books"


def _real_books_dir() -> Path:
    if os.environ.get("ESAMP_DATA_DIR"):
        return Path(os.environ["ESAMP_DATA_DIR"]) / "books"
    return Path(__file__).resolve().parents[1].parent / "shared/data/books"


def _words(n: int, tag: str) -> str:
    """n distinct-ish words in paragraphs of 50."""
    ws = [f"{tag}{i}" for i in range(n)]
    return "\n\n".join(" ".join(ws[i : i + 50]) for i in range(0, n, 50))


# --------------------------------------------------------------------------- #
# strip_gutenberg
# --------------------------------------------------------------------------- #
def test_strip_gutenberg_modern_fixture():
    raw = read_book(FIXTURES / "the_lamplighter.txt")
    out = strip_gutenberg(raw)
    assert "Gutenberg" in raw and "gutenberg" not in out.lower()
    assert "START OF" not in out and "LICENSE" not in out and "Produced by" not in out
    assert out.lstrip().startswith("THE LAMPLIGHTER OF HARROW LANE")
    assert "Martha counted them aloud" in out and out.rstrip().endswith("THE END")


def test_strip_gutenberg_old_gz_fixture():
    raw = read_book(FIXTURES / "the_old_mill.txt.gz")  # no START marker, \r\r\n line ends, BOM
    assert "\r" in raw
    out = strip_gutenberg(raw)
    assert "\r" not in out and "\ufeff" not in out
    assert "Produced by" not in out and "Gutenberg" not in out
    assert out.startswith("THE OLD MILL AT KESTON")
    assert out.rstrip().endswith("FINIS")
    # \r\r\n is one line break, not a blank line between every line
    assert "The mill at Keston had not turned for eleven years, and the village had\ngrown used" in out


@pytest.mark.parametrize(
    "start,end",
    [
        ("*** START OF THIS PROJECT GUTENBERG EBOOK FOO ***", "*** END OF THIS PROJECT GUTENBERG EBOOK FOO ***"),
        ("*** START OF THE PROJECT GUTENBERG EBOOK FOO ***", "*** END OF THE PROJECT GUTENBERG EBOOK FOO ***"),
        ("***START OF THE PROJECT GUTENBERG EBOOK FOO***", "End of the Project Gutenberg EBook of Foo, by Bar"),
        ("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*", "End of Project Gutenberg's Foo, by Bar"),
    ],
)
def test_strip_gutenberg_marker_variants(start, end):
    text = f"The Project Gutenberg EBook of Foo\n\nlicence blah\n\n{start}\n\nBody line one.\nBody line two.\n\n{end}\n\nlicence footer Gutenberg-tm\n"
    out = strip_gutenberg(text)
    assert out == "Body line one.\nBody line two.\n"


def test_strip_gutenberg_without_markers_keeps_text():
    text = "Chapter 1\n\nSome text here.\n"
    assert strip_gutenberg(text) == text


# --------------------------------------------------------------------------- #
# split_passages
# --------------------------------------------------------------------------- #
def test_split_fixture_chapters():
    passages = split_passages(strip_gutenberg(read_book(FIXTURES / "the_lamplighter.txt")))
    assert len(passages) == 3  # the table of contents (CHAPTER lines) gives empty passages, dropped
    assert passages[0].startswith("Every evening, a little before")
    assert passages[1].startswith("The fog came up")
    assert passages[2].startswith("Tobias listened")
    assert all("CHAPTER" not in p for p in passages)
    assert all(len(p.split()) >= 200 for p in passages)
    # lines of a paragraph are joined with single spaces, paragraphs by blank lines
    assert "took down his ladder from the hook behind the chandler's shop and set out" in passages[0]
    assert "\n\n" in passages[0] and "\n\n\n" not in passages[0]


def test_split_fixture_drops_tiny_chapter_and_markup():
    passages = split_passages(strip_gutenberg(read_book(FIXTURES / "the_old_mill.txt.gz")))
    assert len(passages) == 2  # "Chapter 3" (a 15-word postscript) is dropped
    assert passages[0].startswith("The mill at Keston")
    assert "THE OLD MILL AT KESTON" not in passages[0]  # front matter before Chapter 1 dropped
    assert "described as affectionate." in passages[0]  # _affectionate_ -> affectionate
    assert "Michaelmas" not in " ".join(passages)


@pytest.mark.parametrize(
    "fmt",
    [
        "CHAPTER {r}",
        "CHAPTER {r}.",
        "Chapter {a}",
        "CHAPTER {a}",
        "  CHAPTER {r}. A TITLE IN CAPS",
        "Chapter {a}: The Storm",
        "CHAPTER {w}",
        "Chapter {w}",
        "Letter {a}",
    ],
)
def test_split_heading_styles(fmt):
    romans, words = ["I", "II", "XII"], ["ONE", "Twenty-One", "THIRTY-TWO"]
    parts = ["Title page\n\nBy Somebody\n"]
    for i in range(3):
        parts.append(fmt.format(r=romans[i], a=i + 1, w=words[i]))
        parts.append(_words(250, f"c{i}w"))
    passages = split_passages("\n\n\n".join(parts))
    assert len(passages) == 3
    for i, p in enumerate(passages):
        assert p.split() == [f"c{i}w{j}" for j in range(250)]


def test_split_prose_lines_are_not_headings():
    body = _words(300, "x")
    text = "\n\n".join(
        [
            "CHAPTER I",
            body,
            "Chapter and verse were quoted at him by the curate.",
            "Part I of the plan was simple, and",
            "Chapter I was the best, said the critic.",
            "He read the book as far as the end of\nChapter II. Then he slept.",
            body,
            "CHAPTER II",
            body,
        ]
    )
    passages = split_passages(text)
    assert len(passages) == 2
    assert "Chapter and verse were quoted" in passages[0]
    assert "end of Chapter II. Then he slept." in passages[0]


def test_split_bare_roman_numerals_fallback():
    text = "\n\n".join(["A Title", "I", _words(300, "a"), "II.", _words(300, "b"), "   III", _words(300, "c")])
    passages = split_passages(text)
    assert [p.split()[0] for p in passages] == ["a0", "b0", "c0"]


def test_split_without_headings_chunks_by_words():
    text = _words(4500, "w")
    passages = split_passages(text)
    # 2,000-word chunks at paragraph boundaries; the 500-word remainder joins the last one
    assert [len(p.split()) for p in passages] == [2000, 2500]
    assert " ".join(passages).split() == text.split()
    assert [len(p.split()) for p in split_passages(_words(5000, "w"))] == [2000, 2000, 1000]
    assert split_passages(_words(150, "w")) == []  # < 200 words


# --------------------------------------------------------------------------- #
# continuation_prompt
# --------------------------------------------------------------------------- #
def test_continuation_prompt_middle_split():
    passage = "\n\n".join(" ".join(f"w{i}" for i in range(j, j + 10)) for j in range(0, 101, 10))
    words = passage.split()
    assert len(words) == 110
    bp = continuation_prompt(passage, source="book/3")
    assert isinstance(bp, BookPrompt) and bp.source == "book/3"
    assert bp.prompt.split() == [f"w{i}" for i in range(55 - 32, 55)]
    assert bp.prompt == " ".join(f"w{i}" for i in range(23, 55))  # single spaces
    assert bp.reference.split() == words[55:]
    assert bp.to_dict() == {"prompt": bp.prompt, "reference": bp.reference, "source": "book/3"}


def test_continuation_prompt_on_fixture_passage_and_errors():
    passage = split_passages(strip_gutenberg(read_book(FIXTURES / "the_lamplighter.txt")))[0]
    words = passage.split()
    mid = len(words) // 2
    bp = continuation_prompt(passage)
    assert len(bp.prompt.split()) == 32
    assert bp.prompt.split() == words[mid - 32 : mid]  # end of the first half
    assert (bp.prompt + " " + bp.reference).split() == words[mid - 32 :]
    assert len(continuation_prompt(passage, n_words=10).prompt.split()) == 10
    with pytest.raises(ValueError):
        continuation_prompt(" ".join(["w"] * 63))  # first half 31 words < 32


# --------------------------------------------------------------------------- #
# load_book_prompts
# --------------------------------------------------------------------------- #
def test_load_book_prompts_fixture_all_and_ids():
    items = load_book_prompts(FIXTURES, None)
    assert [it["id"] for it in items] == [
        "the_lamplighter/0",
        "the_lamplighter/1",
        "the_lamplighter/2",
        "the_old_mill/0",
        "the_old_mill/1",
    ]
    for it in items:
        assert it["source"] == it["id"] == f"{it['book']}/{it['passage_index']}"
        assert len(it["prompt"].split()) == 32
        assert it["reference"]


def test_load_book_prompts_deterministic_sampling():
    a = load_book_prompts(FIXTURES, 3, seed=7)
    b = load_book_prompts(FIXTURES, 3, seed=7)
    assert a == b and len(a) == 3 and len({it["id"] for it in a}) == 3
    orders = {tuple(it["id"] for it in load_book_prompts(FIXTURES, 3, seed=s)) for s in range(10)}
    assert len(orders) > 1  # the seed matters
    assert load_book_prompts(FIXTURES, 3) == load_book_prompts(FIXTURES, 3, seed=42)


def test_load_book_prompts_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_book_prompts(tmp_path / "missing", 3)
    with pytest.raises(FileNotFoundError, match="no \\*.txt"):
        load_book_prompts(tmp_path, 3)
    with pytest.raises(ValueError):
        load_book_prompts(FIXTURES, 6)


def test_load_book_prompts_reads_txt_and_gz(tmp_path):
    body = "CHAPTER I\n\n" + _words(300, "a") + "\n\nCHAPTER II\n\n" + _words(300, "b") + "\n"
    (tmp_path / "plain.txt").write_text(body, encoding="utf-8")
    with gzip.open(tmp_path / "zipped.txt.gz", "wt", encoding="utf-8") as f:
        f.write(body)
    (tmp_path / "notes.md").write_text(body)  # ignored
    ids = [it["id"] for it in load_book_prompts(tmp_path, None)]
    assert ids == ["plain/0", "plain/1", "zipped/0", "zipped/1"]


# --------------------------------------------------------------------------- #
# The real books (shared/data/books), skipped when absent
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def real_books():
    d = _real_books_dir()
    if not d.is_dir() or not any(d.glob("*.txt*")):
        pytest.skip(f"real books not found at {d}")
    return d


def test_real_books_passages_and_prompts(real_books):
    passages = load_book_passages(real_books)
    assert sum(len(v) for v in passages.values()) >= 100
    assert all(len(v) >= 5 for v in passages.values()), {k: len(v) for k, v in passages.items()}
    for book, ps in passages.items():
        for p in ps:
            assert "gutenberg" not in p.lower(), book
            assert len(p.split()) >= 200
    items = load_book_prompts(real_books, None)
    assert len(items) == sum(len(v) for v in passages.values())
    for it in items:
        assert "Gutenberg" not in it["prompt"]
        assert len(it["prompt"].split()) == 32
    sample = load_book_prompts(real_books, 20, seed=0)
    assert sample == load_book_prompts(real_books, 20, seed=0)
    assert len({it["book"] for it in sample}) > 1
