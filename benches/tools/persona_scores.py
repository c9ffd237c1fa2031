"""Personas of a run against the archetypes the sample generator planted (benches/personas.sh).

    python3 benches/tools/persona_scores.py ARCHETYPES.csv MARTS [--ds 2026-10-31] [--customers N]

Prints one Markdown table row: buyers scored, the k chosen, the silhouettes tried (from
run_results.json) and the adjusted Rand index (Hubert & Arabie 1985) of persona against
archetype over the buyers with a persona.
"""
import argparse
import json
import os
from collections import Counter
from math import comb

import duckdb


def adjusted_rand(pairs: list[tuple[str, str]]) -> float:
    """Adjusted Rand index of two labellings given as (label_a, label_b) per item."""
    n = len(pairs)
    same_both = sum(comb(c, 2) for c in Counter(pairs).values())
    same_a = sum(comb(c, 2) for c in Counter(a for a, _ in pairs).values())
    same_b = sum(comb(c, 2) for c in Counter(b for _, b in pairs).values())
    expected = same_a * same_b / comb(n, 2)
    best = (same_a + same_b) / 2
    return (same_both - expected) / (best - expected) if best != expected else 1.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archetypes")
    parser.add_argument("marts")
    parser.add_argument("--ds", default="2026-10-31")
    parser.add_argument("--customers", default="")
    args = parser.parse_args()
    journey = os.path.join(args.marts, "customer_journey", f"ds={args.ds}", "*.parquet")
    pairs = duckdb.sql(
        f"""
        SELECT CAST(j.persona_id AS VARCHAR), a.archetype
        FROM read_parquet('{journey}') j
        JOIN read_csv('{args.archetypes}', header = true, all_varchar = true) a ON a.customer_id = j.person_id
        WHERE j.persona_id IS NOT NULL
        """
    ).fetchall()
    with open(os.path.join(args.marts, "_runs", f"ds={args.ds}", "run_results.json"), encoding="utf-8") as f:
        results = json.load(f)
    step = next(s for s in results["steps"] if s["name"] == "persona_assignments")
    clustering = step["details"]
    silhouettes = ", ".join(f"{k}: {score:.3f}" for k, score in clustering.get("silhouettes", []))
    print(
        f"| {args.customers} | {len(pairs):,} | {clustering.get('k')} | {silhouettes} | "
        f"{adjusted_rand([(p, a) for p, a in pairs]):.3f} |"
    )


if __name__ == "__main__":
    main()
