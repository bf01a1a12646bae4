"""Input pipeline throughput: augmented CIFAR-shaped images per second.

    python experiments/input_pipeline.py [--batch 256] [--steps 100] [--prefetch 2]

Random uint8 images 50,000 x 32 x 32 x 3 in memory, the training pipeline of
``configs/cifar10.py`` (permutation, crop 32 pad 4, flip, normalise) on one
host. Prints one JSON object: images/s with and without the prefetch thread.
"""
import argparse
import json
import os
import time

import numpy as np

from bntt_jax.data import CIFAR_MEAN, CIFAR_STD
from bntt_jax.data import pipeline


def measure(pipe, steps, prefetch):
  it = pipe.iterate(0, steps + 2, prefetch)
  next(it), next(it)        # warm up the thread and the first permutation
  t = time.perf_counter()
  n = 0
  for b in it:
    n += b['image'].shape[0]
  return n / (time.perf_counter() - t)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--batch', type=int, default=256)
  ap.add_argument('--steps', type=int, default=100)
  ap.add_argument('--prefetch', type=int, default=2)
  args = ap.parse_args()
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(0, 10, 50_000).astype(np.int32)
  pipe = pipeline.TrainPipeline(x, y, global_batch=args.batch, seed=0, augment='crop_flip',
                                crop_padding=4, mean=CIFAR_MEAN, std=CIFAR_STD)
  print(json.dumps({
      'images_per_s': round(measure(pipe, args.steps, 0), 1),
      'images_per_s_prefetch': round(measure(pipe, args.steps, args.prefetch), 1),
      'batch': args.batch, 'steps': args.steps, 'cpus': os.cpu_count(),
      'shape': [32, 32, 3], 'augment': 'crop_flip pad 4 + normalise'}))


if __name__ == '__main__':
  main()
