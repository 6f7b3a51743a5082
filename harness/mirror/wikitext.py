"""WikiText-2: the test files, split into pages as the hub's document-level copy is.

EleutherAI/wikitext_document_level was built by a datasets script that reads the original
Salesforce file, splits it on "\\n", and starts a new page at every top-level heading line
(" = Title = "), dropping pages that are only whitespace; `split_wikitext_pages` does the same.
The mirror holds the test split only: wikitext-2-raw-v1 from the RECONSTRUCTED raw file (the
original wiki.test.raw could not be obtained; see the mirror's SOURCES.md), wikitext-2-v1 from
the official tokenized file.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

TEST_FILES = {
    "wikitext-2-raw-v1": "wikitext/wikitext-2-raw-reconstructed/wiki.test.raw",
    "wikitext-2-v1": "wikitext/wikitext-2/wiki.test.tokens",
}


def split_wikitext_pages(text: str) -> list[str]:
    """Pages of a WikiText file, exactly as the hub's wikitext_document_level script cuts them."""
    pages: list[str] = []
    lines: list[str] = []
    for line in text.split("\n"):
        heading = line.replace("= = =", "===").replace("= =", "==").strip()
        if heading.startswith("= ") and heading.endswith(" ="):  # a page title; sections are "== x =="
            page = "\n".join(lines)
            if page.strip():
                pages.append(page)
            lines = []
        lines.append(line)
    pages.append("\n".join(lines))  # the last page is kept as is, as the script does
    return pages


def load_wikitext_pages(root: Path, name: str | None):
    """WikiText-2 test pages (column `page`), in EleutherAI/wikitext_document_level's schema."""
    import datasets

    if name not in TEST_FILES:
        raise DataUnavailableError(
            f"WikiText config '{name}' is not in the mirror (it has {', '.join(TEST_FILES)}; test split only)"
        )
    path = root / TEST_FILES[name]
    if not path.exists():
        raise DataUnavailableError(f"WikiText {name}: {path} is missing from the mirror")
    # text mode like the hub's script (universal newlines), so a CRLF copy reads the same
    with open(path, encoding="utf-8") as f:
        pages = split_wikitext_pages(f.read())
    test = datasets.Dataset.from_dict({"page": pages}, features=datasets.Features({"page": datasets.Value("string")}))
    return mirror_dataset_dict(
        {"test": test},
        ("train", "validation"),
        source=f"EleutherAI/wikitext_document_level/{name} in the mirror {root}",
    )


LAYOUTS = {
    "EleutherAI/wikitext_document_level": Layout(
        "wikitext",
        load_wikitext_pages,
        "WikiText-2 test files: wikitext/wikitext-2-raw-reconstructed/wiki.test.raw (RECONSTRUCTED raw), "
        "wikitext/wikitext-2/wiki.test.tokens",
        configs=TEST_FILES,
    ),
}
