"""Where to put memory_search's default score floor: the scores of related and unrelated texts.

Each query below has one note written for it; every other note (and a few everyday texts)
is unrelated to it (a few share a word, as real notes do). The script prints the two score
distributions of the built-in hashing embedder and, for a few floors, how many related
hits each keeps and how many unrelated ones it lets through; `HashingEmbedder.default_min_score`
is set from it: the highest floor that keeps every related hit.

    .venv/bin/python benchmarks/relevance_bench.py
"""

from __future__ import annotations

import numpy as np

from server.vectors import HashingEmbedder

PAIRS = [
    ("coder", "the coder agent finished the parser refactor"),
    ("login bug", "fixed the login bug in the auth service"),
    ("deploy billing", "deployed the billing service to production"),
    ("database migration", "ran the database migration for the user tables"),
    ("test failures", "three test failures in the payment module"),
    ("kubernetes upgrade", "upgrade the kubernetes cluster to 1.30"),
    ("api rate limit", "the public api hits its rate limit at noon"),
    ("memory leak", "found a memory leak in the worker pool"),
    ("research summary", "summary of the research on vector databases"),
    ("security review", "security review of the token handling"),
    ("flaky tests in ci", "the ci pipeline has flaky integration tests"),
    ("cost of the swarm", "the swarm cost 4 dollars in tokens today"),
    ("reviewer feedback", "feedback from the reviewer on pull request 42"),
    ("upload failures", "two uploads failed with a timeout"),
    ("schema change", "the schema changed: a new column for tags"),
]
EVERYDAY = ["again", "hello world", "sailing trip to the islands", "quarterly budget spreadsheet",
            "lunch at noon tomorrow", "the cat sat on the mat", "weather is nice today", "pizza order for the team"]


def main() -> None:
    embedder = HashingEmbedder(384)
    notes = [note for _, note in PAIRS] + EVERYDAY
    note_vectors = embedder.embed(notes)
    related, unrelated = [], []
    for index, (query, _) in enumerate(PAIRS):
        scores = note_vectors @ embedder.embed([query])[0]
        related.append(float(scores[index]))
        unrelated.extend(float(score) for position, score in enumerate(scores) if position != index)
    low, high = min(related), max(unrelated)
    print(f"embedder {embedder.name}: {len(related)} related pairs, {len(unrelated)} unrelated")
    print(f"related   scores: min {low:.3f}  median {np.median(related):.3f}  max {max(related):.3f}")
    print(f"unrelated scores: max {high:.3f}  p99 {np.percentile(unrelated, 99):.3f}  "
          f"median {np.median(unrelated):.3f}")
    for floor in (0.1, 0.15, 0.2, 0.25, 0.3):
        kept = sum(score >= floor for score in related) / len(related)
        noise = sum(score >= floor for score in unrelated) / len(unrelated)
        print(f"floor {floor:.2f}: keeps {kept:6.1%} of related, lets through {noise:5.1%} of unrelated")
    print(f"default_min_score of {embedder.name}: {embedder.default_min_score}")


if __name__ == "__main__":
    main()
