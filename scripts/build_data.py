"""Regenerate the data tables shipped in ``tslens/data`` from maintained libraries.

Run once by a maintainer (``pip install -e .[data]; python scripts/build_data.py``); the
resulting JSONL files are committed so that every run is reproducible and offline.

- ``countries.jsonl``: name, capital, continent, currency from ``countryinfo`` (facts) and
  ``pycountry`` (currency names).
- ``words.jsonl``: frequent lowercase English words from ``wordfreq``.
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tslens" / "data"

# countryinfo reports the UN region ("Americas"); the paper's "continent" task splits it. The
# UN M49 "South America" sub-region, by ISO 3166 alpha-2 code:
SOUTH_AMERICA = set("AR BO BR CL CO EC FK GF GY PY PE SR UY VE".split())


def continent(region: str, iso2: str) -> str | None:
    if region == "Americas":
        return "South America" if iso2 in SOUTH_AMERICA else "North America"
    if region in {"Africa", "Asia", "Europe", "Oceania"}:
        return region
    return None


def build_countries() -> list[dict[str, str]]:
    import pycountry
    from countryinfo import CountryInfo

    rows = []
    for _, info in sorted(CountryInfo.all().items()):
        name, capital = info.get("name"), info.get("capital")
        if isinstance(capital, list):  # a few entries list several; the first is the seat
            capital = capital[0] if capital else None
        cont = continent(info.get("region") or "", (info.get("ISO") or {}).get("alpha2", ""))
        codes = info.get("currencies") or []
        currency = pycountry.currencies.get(alpha_3=codes[0]) if codes else None
        if not (name and capital and cont and currency):
            continue
        rows.append(
            {"country": name, "capital": capital, "continent": cont, "currency": currency.name}
        )
    return rows


def build_words(n: int = 600) -> list[dict[str, str]]:
    from wordfreq import top_n_list

    words = [w for w in top_n_list("en", 20000) if w.isascii() and w.isalpha() and w.islower()]
    # Letter tasks need a distinct first and last letter to be informative; length >= 4
    # keeps function words out.
    words = [w for w in words if len(w) >= 4 and w[0] != w[-1]]
    return [{"word": w} for w in words[:n]]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    write_jsonl(DATA / "countries.jsonl", build_countries())
    write_jsonl(DATA / "words.jsonl", build_words())
