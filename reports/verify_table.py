"""The `verify` report: one heading per artifact with its full name, then its checks.

Artifact names are long (`minicpmv-2.6.decoder.xnnpack.8da4w-kvint4.pte`); as a table column they
were cut to the same prefix at 80 columns, so rows could not be told apart.
"""

from __future__ import annotations

STATUS_STYLE = {"pass": "green", "fail": "red", "not run": "yellow"}


def print_verify_results(results, title: str, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    console.print(Text(title, style="bold"))
    groups: dict[str, list] = {}
    for r in results:
        groups.setdefault(r.artifact, []).append(r)
    for artifact, rows in groups.items():
        console.print(Text(artifact, style="bold", overflow="fold"))
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)  # status
        table.add_column(no_wrap=True)  # check
        table.add_column(overflow="fold")  # detail wraps, never cut
        for r in rows:
            style = STATUS_STYLE.get(r.status, "")
            table.add_row(f"  [{style}]{escape(r.status)}[/]", escape(r.check), escape(r.detail))
        console.print(table)
    counts = {status: sum(r.status == status for r in results) for status in STATUS_STYLE}
    console.print(", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no checks")
