#!/usr/bin/env python3
"""Generate synthetic dimuon events for the high-energy-physics example.

Usage: python generate.py --out DIR [--files 10] [--events 2000] [--seed 0]

Writes DIR/events/000.csv, 001.csv, ... with one event per row and the columns
`mu1_pt,mu1_eta,mu1_phi,mu2_pt,mu2_eta,mu2_phi` (pt in GeV, massless muons).
About 80% of the events are Z -> mu mu-like: the pair mass is drawn from a
Breit-Wigner around 91.19 GeV (width 2.50 GeV) smeared by a 1.5 GeV
resolution, and the muon momenta are chosen to reproduce that mass.  The rest
is a smooth combinatorial background.  File n depends only on (seed, n,
events): the files are byte-for-byte reproducible.
Needs only the standard library and numpy.
"""
import argparse
import os

import numpy as np

Z_MASS = 91.1876  # GeV
Z_WIDTH = 2.4952  # GeV
RESOLUTION = 1.5  # GeV
SIGNAL_FRACTION = 0.8


def wrap_phi(phi):
    return (phi + np.pi) % (2 * np.pi) - np.pi


def make_events(rng, n):
    signal = rng.uniform(size=n) < SIGNAL_FRACTION
    eta1 = np.clip(rng.normal(0.0, 1.0, n), -2.4, 2.4)
    eta2 = np.clip(eta1 + rng.normal(0.0, 0.8, n), -2.4, 2.4)
    phi1 = rng.uniform(-np.pi, np.pi, n)

    # Signal: back-to-back-ish muons whose pair mass follows the Z line shape.
    # For massless muons m^2 = 2 pt1 pt2 (cosh(deta) - cos(dphi)), so pick the
    # pt ratio and solve for pt1.
    mass = np.clip(Z_MASS + 0.5 * Z_WIDTH * np.tan(np.pi * (rng.uniform(size=n) - 0.5)), 50.0, 150.0)
    mass = mass + rng.normal(0.0, RESOLUTION, n)
    phi2_sig = wrap_phi(phi1 + np.pi + rng.normal(0.0, 0.3, n))
    ratio = rng.uniform(0.6, 1.0, n)
    geometry = np.cosh(eta1 - eta2) - np.cos(phi1 - phi2_sig)
    pt1_sig = mass / np.sqrt(2.0 * ratio * geometry)
    pt2_sig = ratio * pt1_sig

    # Background: independent muons with falling pt spectra.
    phi2_bkg = rng.uniform(-np.pi, np.pi, n)
    pt1_bkg = 20.0 + rng.exponential(20.0, n)
    pt2_bkg = 15.0 + rng.exponential(15.0, n)

    return np.column_stack([
        np.where(signal, pt1_sig, pt1_bkg), eta1, phi1,
        np.where(signal, pt2_sig, pt2_bkg), eta2, np.where(signal, phi2_sig, phi2_bkg),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="data directory to create/fill")
    parser.add_argument("--files", type=int, default=10, help="number of event files (default 10)")
    parser.add_argument("--events", type=int, default=2000, help="events per file (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    args = parser.parse_args()

    events_dir = os.path.join(args.out, "events")
    os.makedirs(events_dir, exist_ok=True)
    for n in range(args.files):
        events = make_events(np.random.default_rng([args.seed, n]), args.events)
        with open(os.path.join(events_dir, f"{n:03d}.csv"), "w", newline="") as f:
            f.write("mu1_pt,mu1_eta,mu1_phi,mu2_pt,mu2_eta,mu2_phi\n")
            for row in events:
                f.write(",".join(f"{v:.4f}" for v in row) + "\n")
    print(f"wrote {args.files} files x {args.events} events to {events_dir}")


if __name__ == "__main__":
    main()
