"""Writes news3.csv: a 3-label task for the task-file test and the README's worked example, derived
from the shipped AG News test set (../shared/data/agnews/test.csv): its first 80 articles of each of
World, Sports and Business, in file order, with string labels and the title and description as two
columns. Run: python tests/data/make_news3.py [DATA_DIR]."""

import csv
import sys
from pathlib import Path

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "agnews" / "test.csv"
names = {"0": "world", "1": "sports", "2": "business"}
taken = {k: 0 for k in names}
rows = []
with open(src, newline="") as f:
    for r in csv.DictReader(f):
        if r["label"] in names and taken[r["label"]] < 80:
            taken[r["label"]] += 1
            rows.append({"topic": names[r["label"]], "headline": r["title"], "body": r["description"]})
out = Path(__file__).with_name("news3.csv")
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["topic", "headline", "body"])
    w.writeheader()
    w.writerows(rows)
print(f"wrote {out}: {len(rows)} rows")
