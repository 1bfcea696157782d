"""Put the claims tables that `tslens reproduce` wrote into docs/findings.md (between the
`<!-- reproduce:begin -->` and `<!-- reproduce:end -->` markers), so that the table is the
measurement's output, never typed.

    python scripts/claims_table.py out/reproduce/gemma-3-270m out/reproduce/smollm2-135m
"""

from __future__ import annotations

import sys
from pathlib import Path

FINDINGS = Path(__file__).resolve().parents[1] / "docs" / "findings.md"
BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"


def splice(page: str, tables: list[str]) -> str:
    """``page`` with the text between the markers replaced by ``tables``."""
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{FINDINGS} lacks the {BEGIN} / {END} markers")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + "\n" + "\n".join(tables) + END + tail


def main() -> None:
    runs = [Path(p) for p in sys.argv[1:]]
    if not runs:
        raise SystemExit(__doc__)
    tables = [(run / "claims.md").read_text() for run in runs]
    FINDINGS.write_text(splice(FINDINGS.read_text(), tables))
    print(f"wrote {len(tables)} claims tables into {FINDINGS}")


if __name__ == "__main__":
    main()
