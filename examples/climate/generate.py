#!/usr/bin/env python3
"""Generate synthetic daily temperature series for the climate example.

Usage: python generate.py --out DIR [--stations 10] [--years 5] [--seed 0]

Writes DIR/stations/ST000.csv, ST001.csv, ... with the columns `date,temperature`
(one row per day from 2000-01-01, temperature in degrees C with 2 decimals):

    temperature = baseline + trend * t + amplitude * sin(2 pi (t - phase)) + noise

where t is the time in years (days since 2000-01-01 / 365.25) and the noise is
Gaussian. The per-station parameters are written to DIR/truth.json so the
notebook can check the trend it recovers. Station i depends only on
(seed, i, years): the files are byte-for-byte reproducible.
Needs only the standard library and numpy.
"""
import argparse
import datetime
import json
import os

import numpy as np

EPOCH = datetime.date(2000, 1, 1)


def station_parameters(rng):
    return {
        "baseline_c": round(float(rng.uniform(-5.0, 25.0)), 3),
        "trend_c_per_year": round(float(rng.uniform(0.01, 0.08)), 4),
        "seasonal_amplitude_c": round(float(rng.uniform(3.0, 15.0)), 3),
        "seasonal_phase_years": round(float(rng.uniform(0.0, 1.0)), 4),
        "noise_std_c": round(float(rng.uniform(0.3, 0.8)), 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="data directory to create/fill")
    parser.add_argument("--stations", type=int, default=10, help="number of stations (default 10)")
    parser.add_argument("--years", type=int, default=5, help="years of daily data from 2000-01-01, at least 2 (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    args = parser.parse_args()
    if args.years < 2:
        parser.error("--years must be at least 2: over one year the trend is hardly separable from the seasonal cycle")

    stations_dir = os.path.join(args.out, "stations")
    os.makedirs(stations_dir, exist_ok=True)
    n_days = (datetime.date(EPOCH.year + args.years, 1, 1) - EPOCH).days
    t = np.arange(n_days) / 365.25
    truth = {}
    for i in range(args.stations):
        station = f"ST{i:03d}"
        rng = np.random.default_rng([args.seed, i])
        p = station_parameters(rng)
        temperature = (
            p["baseline_c"]
            + p["trend_c_per_year"] * t
            + p["seasonal_amplitude_c"] * np.sin(2 * np.pi * (t - p["seasonal_phase_years"]))
            + rng.normal(0.0, p["noise_std_c"], n_days)
        )
        with open(os.path.join(stations_dir, station + ".csv"), "w", newline="") as f:
            f.write("date,temperature\n")
            for day, value in enumerate(temperature):
                f.write(f"{EPOCH + datetime.timedelta(days=day)},{value:.2f}\n")
        truth[station] = p

    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump({"epoch": EPOCH.isoformat(), "years": args.years, "seed": args.seed, "stations": truth},
                  f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {args.stations} stations x {n_days} days to {stations_dir} (+ truth.json)")


if __name__ == "__main__":
    main()
