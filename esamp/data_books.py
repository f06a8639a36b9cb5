"""Creative-writing prompts from Project Gutenberg books (BookCorpus-style continuation).

Protocol (as in the paper's BookCorpus continuation task):

1. :func:`strip_gutenberg` removes the Project Gutenberg header, licence
   footer and the "Produced by ..." credit lines.
2. :func:`split_passages` cuts a book into chapters (one passage per chapter;
   headings such as ``CHAPTER I``, ``Chapter 1``, ``CHAPTER XII.``,
   ``CHAPTER ONE``, ``Letter 3``, ``VOLUME II`` or -- for books without such
   headings -- bare roman-numeral lines ``I``/``II``...).  A book without any
   heading is cut into ~2,000-word passages at paragraph boundaries.  Passages
   under 200 words (tables of contents, title pages) are dropped, as is the
   front matter before the first heading.
3. :func:`continuation_prompt` splits a passage at its middle word; the prompt
   is the last 32 words of the first half (single-space joined), the second
   half is kept as the reference continuation.
4. :func:`load_book_prompts` does this for every ``*.txt`` / ``*.txt.gz`` in a
   folder and samples ``num_prompts`` prompts with ``random.Random(seed)``.

Prompt ids are ``<book_stem>/<passage_index>`` (``emma/12``: the 13th kept
passage of ``emma.txt.gz``).
"""

from __future__ import annotations

import gzip
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "BookPrompt",
    "continuation_prompt",
    "iter_book_files",
    "load_book_passages",
    "load_book_prompts",
    "read_book",
    "split_passages",
    "strip_gutenberg",
]

MIN_PASSAGE_WORDS = 200
CHUNK_WORDS = 2000

# --------------------------------------------------------------------------- #
# Header / footer
# --------------------------------------------------------------------------- #
# "*** START OF THIS PROJECT GUTENBERG EBOOK X ***", "*** START OF THE PROJECT
# GUTENBERG EBOOK X ***", "***START OF THE PROJECT GUTENBERG EBOOK", and the
# 1990s "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*".
_START_RE = re.compile(
    r"^\W*(?:start\s+of\s+(?:the\s+|this\s+)?project\s+gutenberg"
    r"|\*end\*\s*the\s+small\s+print)",
    re.IGNORECASE | re.MULTILINE,
)
# "*** END OF THIS PROJECT GUTENBERG EBOOK X ***", "End of the Project Gutenberg
# EBook of X", "End of Project Gutenberg's X", "End of this Project Gutenberg Etext".
_END_RE = re.compile(
    r"^\W*end\s+of\s+(?:the\s+|this\s+)?project\s+gutenberg",
    re.IGNORECASE | re.MULTILINE,
)
_CREDIT_RE = re.compile(
    r"^\s*(?:produced\s+by|e-?text\s+prepared\s+by|transcribed\s+(?:from|by))\b",
    re.IGNORECASE,
)


def _normalise_newlines(text: str) -> str:
    # "\r\n", lone "\r", and the "\r\r\n" of doubly converted files -> "\n"
    return re.sub(r"\r+\n|\r", "\n", text)


def strip_gutenberg(text: str) -> str:
    """Remove the Project Gutenberg header, licence footer and credit lines.

    Everything up to and including the ``*** START OF ... PROJECT GUTENBERG ...``
    line (if present) and everything from the first ``End of the Project
    Gutenberg ...`` / ``*** END OF ... PROJECT GUTENBERG ...`` line (if present)
    is removed.  Files without a start marker (older transcriptions begin
    directly with "Produced by ...") keep their beginning.  Then paragraphs in
    the first 200 lines that are production credits ("Produced by ...") or that
    mention "Project Gutenberg" are dropped.  A leading BOM is removed and line
    endings (``\\r\\n``, ``\\r\\r\\n``, ``\\r``) normalised to ``\\n``.
    """
    text = _normalise_newlines(text.lstrip("\ufeff"))
    starts = list(_START_RE.finditer(text))
    if starts:
        # take the last start marker in the header zone (some files repeat it)
        first = starts[0]
        head_zone = [m for m in starts if m.start() - first.start() < 20_000]
        m = head_zone[-1]
        nl = text.find("\n", m.end())
        text = text[nl + 1 :] if nl >= 0 else ""
    end = _END_RE.search(text)
    if end:
        text = text[: end.start()]

    # drop credit / Gutenberg-mentioning paragraphs near the top
    lines = text.split("\n")
    head, tail = lines[:200], lines[200:]
    paras: list[list[str]] = [[]]
    for ln in head:
        if ln.strip():
            paras[-1].append(ln)
        else:
            paras.append([ln])  # keep the blank line with the next paragraph
    kept: list[str] = []
    for p in paras:
        body = [ln for ln in p if ln.strip()]
        if body and (_CREDIT_RE.match(body[0]) or any("gutenberg" in ln.lower() for ln in body)):
            kept.extend(ln for ln in p if not ln.strip())
            continue
        kept.extend(p)
    return "\n".join(kept + tail).strip("\n") + "\n"


# --------------------------------------------------------------------------- #
# Chapters / passages
# --------------------------------------------------------------------------- #
_ROMAN = r"[IVXLCDM]+"
_NUM_WORDS = (
    r"(?i:(?:ONE|TWO|THREE|FOUR|FIVE|SIX|SEVEN|EIGHT|NINE|TEN|ELEVEN|TWELVE|THIRTEEN|FOURTEEN"
    r"|FIFTEEN|SIXTEEN|SEVENTEEN|EIGHTEEN|NINETEEN|TWENTY|THIRTY|FORTY|FIFTY|SIXTY|SEVENTY"
    r"|EIGHTY|NINETY|HUNDRED|FIRST|SECOND|THIRD|FOURTH|FIFTH|SIXTH|SEVENTH|EIGHTH|NINTH|TENTH"
    r"|LAST)(?:[- ](?:ONE|TWO|THREE|FOUR|FIVE|SIX|SEVEN|EIGHT|NINE))?)"
)
_NUM = rf"(?:{_ROMAN}|\d+|{_NUM_WORDS})"
_KEYWORDS = r"(?:CHAPTER|Chapter|CHAP\.|Chap\.|LETTER|Letter|VOLUME|Volume|PART|Part|BOOK|Book|STAVE|Stave)"
# "CHAPTER XII.", "Chapter 1", "CHAPTER I. NAT", "CHAPTER ONE", "Chapter Twenty-One",
# "Chapter 3: The Storm", "Letter 4", "VOLUME II", "PROLOGUE".  A title on the same line must
# follow a separator (". : — –  -") or be in capitals, so that prose lines
# ("Chapter and verse ...", "Part of the ...") never match.
_HEADING_RE = re.compile(
    rf"^(?:{_KEYWORDS}\s+{_NUM}\.?(?:\s*[.:\u2014\u2013-]\s*\S.*|\s+[^a-z]+)?"
    r"|PROLOGUE|Prologue|EPILOGUE|Epilogue)$"
)
_BARE_ROMAN_RE = re.compile(rf"^{_ROMAN}\.?$")
_ILLUSTRATION_RE = re.compile(r"\[Illustration[^\]]*\]", re.IGNORECASE | re.DOTALL)
_EMPHASIS_RE = re.compile(r"(?<!\w)_(\S(?:[^_]*\S)?)_(?!\w)")


def _is_keyword_heading(line: str) -> bool:
    s = line.strip()
    return bool(s) and len(s) <= 100 and bool(_HEADING_RE.match(s))


def _is_roman_heading(line: str) -> bool:
    s = line.strip()
    return bool(s) and len(s) <= 10 and bool(_BARE_ROMAN_RE.match(s))


def _clean_block(lines: list[str]) -> list[str]:
    """Lines of one passage -> list of paragraphs (single-spaced, markup removed)."""
    text = "\n".join(lines)
    text = _ILLUSTRATION_RE.sub("\n", text)
    paras = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        para = _EMPHASIS_RE.sub(r"\1", para)
        if para:
            paras.append(para)
    return paras


def _n_words(paras: list[str]) -> int:
    return sum(len(p.split()) for p in paras)


def _chunk_paragraphs(paras: list[str], target: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    cur: list[str] = []
    n = 0
    for p in paras:
        cur.append(p)
        n += len(p.split())
        if n >= target:
            chunks.append(cur)
            cur, n = [], 0
    if cur:
        if chunks and n < target // 2:
            chunks[-1].extend(cur)  # a short remainder joins the previous passage
        else:
            chunks.append(cur)
    return chunks


def split_passages(
    text: str, min_words: int = MIN_PASSAGE_WORDS, chunk_words: int = CHUNK_WORDS
) -> list[str]:
    """Split a (stripped) book into passages: one per chapter, else ~2,000-word chunks.

    Chapter headings are lines that start a paragraph (first line or after a
    blank line) and consist of a keyword heading (``CHAPTER I``,
    ``Chapter 1``, ``CHAPTER XII.``, ``CHAPTER I. NAT``, ``CHAPTER ONE``,
    ``Letter 4``, ``VOLUME II``, ``PART 2``, ``BOOK III``, ``PROLOGUE``); books with fewer than
    two such lines use bare roman-numeral lines (``I``, ``II.``, ...) instead.
    The heading line itself is not part of the passage and the text before the
    first heading (title page, preface) is dropped.  Without any heading the book
    is cut into ``chunk_words``-word passages at paragraph boundaries.  Passages
    are returned as paragraphs joined by blank lines (whitespace inside a
    paragraph collapsed, ``[Illustration]`` and ``_emphasis_`` markup removed);
    those under ``min_words`` words are dropped.
    """
    lines = _normalise_newlines(text).split("\n")
    # a heading starts a paragraph: first line, or preceded by a blank line
    starts = [i for i, ln in enumerate(lines) if i == 0 or not lines[i - 1].strip()]
    heads = [i for i in starts if _is_keyword_heading(lines[i])]
    if len(heads) < 2:
        heads = [i for i in starts if _is_roman_heading(lines[i])]
    blocks: list[list[str]]
    if len(heads) >= 2:
        bounds = heads + [len(lines)]
        blocks = [_clean_block(lines[a + 1 : b]) for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        blocks = _chunk_paragraphs(_clean_block(lines), chunk_words)
    return ["\n\n".join(b) for b in blocks if _n_words(b) >= min_words]


# --------------------------------------------------------------------------- #
# Prompts
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class BookPrompt:
    """A continuation prompt: ``prompt`` (last words of a passage's first half),
    ``reference`` (the passage's second half) and ``source`` (``<book>/<index>``)."""

    prompt: str
    reference: str
    source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def continuation_prompt(passage: str, n_words: int = 32, source: str | None = None) -> BookPrompt:
    """Split ``passage`` at its middle word and return the continuation prompt.

    With ``w = passage.split()`` and ``mid = len(w) // 2``: ``prompt`` is
    ``" ".join(w[mid - n_words : mid])`` (exactly ``n_words`` words) and
    ``reference`` is ``" ".join(w[mid:])``.  Raises ``ValueError`` if the first
    half has fewer than ``n_words`` words.
    """
    if n_words < 1:
        raise ValueError("n_words must be >= 1")
    words = passage.split()
    mid = len(words) // 2
    if mid < n_words:
        raise ValueError(
            f"passage too short for a {n_words}-word prompt: {len(words)} words (first half {mid})"
        )
    return BookPrompt(
        prompt=" ".join(words[mid - n_words : mid]),
        reference=" ".join(words[mid:]),
        source=source,
    )


def _book_stem(path: Path) -> str:
    name = path.name
    for suf in (".txt.gz", ".txt"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def iter_book_files(books_dir: str | Path) -> list[Path]:
    """Sorted ``*.txt`` and ``*.txt.gz`` files in ``books_dir`` (clear errors if none)."""
    d = Path(books_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"books folder not found: {d} (expected a folder of Project Gutenberg "
            "*.txt / *.txt.gz files, e.g. shared/data/books or $ESAMP_DATA_DIR/books)"
        )
    files = sorted(
        (p for p in d.iterdir() if p.is_file() and (p.name.endswith(".txt") or p.name.endswith(".txt.gz"))),
        key=lambda p: p.name,
    )
    if not files:
        raise FileNotFoundError(f"no *.txt or *.txt.gz books in {d}")
    stems = [_book_stem(p) for p in files]
    dups = sorted({s for s in stems if stems.count(s) > 1})
    if dups:
        raise ValueError(f"books with the same name as .txt and .txt.gz in {d}: {dups}")
    return files


def read_book(path: str | Path) -> str:
    """Read a ``.txt`` or ``.txt.gz`` book as UTF-8 (undecodable bytes replaced)."""
    path = Path(path)
    raw = gzip.open(path, "rb").read() if path.name.endswith(".gz") else path.read_bytes()
    return raw.decode("utf-8", errors="replace")


def load_book_passages(books_dir: str | Path) -> dict[str, list[str]]:
    """``{book_stem: [passage, ...]}`` for every book in ``books_dir`` (sorted by file name)."""
    return {_book_stem(p): split_passages(strip_gutenberg(read_book(p))) for p in iter_book_files(books_dir)}


def load_book_prompts(
    books_dir: str | Path, num_prompts: int | None, seed: int = 42, n_words: int = 32
) -> list[dict]:
    """Continuation prompts from every book in ``books_dir``, ``num_prompts`` sampled.

    Each item is ``{"id", "source", "book", "passage_index", "prompt", "reference"}``
    with ``id == source == "<book_stem>/<passage_index>"``.  Sampling uses
    ``random.Random(seed).sample`` over all prompts in (file name, passage) order,
    so the result depends only on the files and the seed.  ``num_prompts=None``
    returns every prompt in that order; a ``num_prompts`` larger than the number
    of passages is an error.
    """
    items: list[dict] = []
    for book, passages in load_book_passages(books_dir).items():
        for i, passage in enumerate(passages):
            pid = f"{book}/{i}"
            bp = continuation_prompt(passage, n_words=n_words, source=pid)
            items.append(
                {
                    "id": pid,
                    "source": pid,
                    "book": book,
                    "passage_index": i,
                    "prompt": bp.prompt,
                    "reference": bp.reference,
                }
            )
    if not items:
        raise ValueError(f"no passages of >= {MIN_PASSAGE_WORDS} words found in {books_dir}")
    if num_prompts is None:
        return items
    if num_prompts < 0 or num_prompts > len(items):
        raise ValueError(f"num_prompts={num_prompts} but {len(items)} passages are available")
    return random.Random(seed).sample(items, num_prompts)
