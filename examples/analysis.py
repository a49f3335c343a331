"""A small analysis: per-site statistics of sensor measurements.

Usage: python3 examples/analysis.py MEASUREMENTS.csv OUT_DIR

Reads the CSV, writes OUT_DIR/summary.csv and OUT_DIR/summary.json (saved
atomically, as careful tools do), and logs progress to a scratch file it removes.
"""
import csv
import json
import os
import statistics
import sys
import tempfile

source, out_dir = sys.argv[1], sys.argv[2]
os.makedirs(out_dir, exist_ok=True)

by_site = {}
with open(source, newline="") as f:
    for row in csv.DictReader(f):
        by_site.setdefault(row["site"], []).append(float(row["value"]))

summary = {
    site: {"n": len(values), "mean": statistics.fmean(values), "stdev": statistics.pstdev(values)}
    for site, values in sorted(by_site.items())
}

with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["site", "n", "mean", "stdev"])
    for site, stats in summary.items():
        writer.writerow([site, stats["n"], f"{stats['mean']:.3f}", f"{stats['stdev']:.3f}"])

fd, temp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
with os.fdopen(fd, "w") as f:
    json.dump(summary, f, indent=2)
os.replace(temp, os.path.join(out_dir, "summary.json"))

print(f"{len(summary)} sites summarised into {out_dir}")
