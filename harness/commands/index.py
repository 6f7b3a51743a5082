"""`harness index`: retrieval indexes (BM25, dense) of passage collections, for RAG tasks."""

from __future__ import annotations

import click

from harness.commands.options import DATA_DIR_OPTION


@click.group("index")
def index_group():
    """Retrieval indexes (BM25, dense) of passage collections, for RAG tasks."""


@index_group.command("build")
@click.option(
    "--docs",
    required=True,
    help="A JSONL file (id, text, optional title), a folder of .txt files, or squad_dev_paragraphs.",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="The index folder to write (new or empty)."
)
@click.option("--retriever", required=True, help="bm25 (bm25s, stemmed, English stopwords) or dense (MiniLM + FAISS).")
@click.option(
    "--chunk", type=int, default=None, help="Cut documents into passages of this many words (default: whole)."
)
@DATA_DIR_OPTION
def index_build(docs, out, retriever, chunk, data_dir):
    """Build a retrieval index of a collection into a folder (with spec.json: what built it)."""
    from harness.retrieval import build_collection_index

    spec = build_collection_index(docs, out, retriever, chunk=chunk, data_dir=data_dir).spec
    click.echo(
        f"{spec['retriever']} index of {spec['passages']} passages ({spec['source_documents']} documents) "
        f"in {spec['build_seconds']:.1f} s -> {out}"
    )


@index_group.command("search")
@click.argument("index_dir", type=click.Path())
@click.argument("query")
@click.option("-k", type=click.IntRange(min=1), default=3, show_default=True, help="Passages to show.")
def index_search(index_dir, query, k):
    """Show the k best passages of an index for a query."""
    from harness.retrieval import Index

    for rank, (pid, score, text) in enumerate(Index.load(index_dir).search([query], k)[0], 1):
        click.echo(f"{rank}. {pid}  {score:.4f}  {text[:200]}")


COMMANDS = (index_group,)
