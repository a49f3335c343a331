#!/usr/bin/env python3
"""Generate synthetic grayscale images for the convolution example.

Usage: python generate.py --out DIR [--images 10] [--size 64] [--seed 0]

Writes DIR/images/img000.npy, img001.npy, ... : 2-D uint8 arrays (size x size)
showing a few rectangles and discs on a smooth gradient, plus Gaussian noise.
Image i depends only on (seed, i, size), so the files are byte-for-byte
reproducible and adding images does not change the existing ones.
Needs only the standard library and numpy.
"""
import argparse
import os

import numpy as np


def make_image(rng, size):
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    angle = rng.uniform(0, 2 * np.pi)
    img = 0.2 + 0.2 * (np.cos(angle) * x + np.sin(angle) * y)
    for _ in range(rng.integers(2, 5)):  # rectangles
        x0, y0 = rng.integers(0, size - size // 4, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0.3, 1.0)
    for _ in range(rng.integers(1, 4)):  # discs
        cx, cy = rng.uniform(0, 1, 2)
        r = rng.uniform(0.05, 0.25)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0.0, 1.0)
    img = img + rng.normal(0.0, 0.03, img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="data directory to create/fill")
    parser.add_argument("--images", type=int, default=10, help="number of images (default 10)")
    parser.add_argument("--size", type=int, default=64, help="image width and height in pixels, at least 32 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    args = parser.parse_args()
    if args.size < 32:
        parser.error("--size must be at least 32")

    images_dir = os.path.join(args.out, "images")
    os.makedirs(images_dir, exist_ok=True)
    for i in range(args.images):
        rng = np.random.default_rng([args.seed, i])
        np.save(os.path.join(images_dir, f"img{i:03d}.npy"), make_image(rng, args.size))
    print(f"wrote {args.images} images of {args.size}x{args.size} to {images_dir}")


if __name__ == "__main__":
    main()
