r"""CPU inference time of a model and of its rebuilt version at a FLOP ratio.

  python benchmarks/rebuilt_latency.py --model=MobileNetV2 --flop_ratio=0.5

The rebuilt structure is the original widths scaled by the one multiplier
that brings the FLOPs to `flop_ratio` x the original (expansion
.expand_to_cost, within 1%). The model is traced and analysed once: one
StructureCost gives the original cost, drives the search and hands its
channel model to rebuild. Both models run side by side in one process:
repeats alternate between them, and the medians are compared.
"""

import argparse
import os
import time

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top,wrong-import-position


def build(name, size):
  fn = getattr(keras.applications, name)
  return fn(weights=None, input_shape=(size, size, 3), classes=10)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='MobileNetV2')
  parser.add_argument('--size', type=int, default=96)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--flop_ratio', type=float, default=0.5)
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--round_to', type=int, default=8)
  args = parser.parse_args()

  model = build(args.model, args.size)
  flops = structure_cost.StructureCost(model)
  full = flops.channels.original_structure(changeable_only=False)
  original_cost = flops.cost({})
  structure, multiplier, cost = expansion.expand_to_cost(
      flops, full, args.flop_ratio * original_cost, round_to=args.round_to)
  small = rebuild.rebuild(model, structure, channels=flops.channels)
  x = tf.constant(np.random.RandomState(0).rand(
      args.batch, args.size, args.size, 3).astype('float32'))
  runs = {}
  for label, m in (('original', model), ('rebuilt', small)):
    f = tf.function(lambda t, m=m: m(t, training=False), jit_compile=False)
    f(x).numpy()  # Trace and warm up.
    f(x).numpy()
    runs[label] = (f, [])
  for _ in range(args.repeats):
    for label in ('original', 'rebuilt'):
      f, times = runs[label]
      start = time.perf_counter()
      f(x).numpy()
      times.append(time.perf_counter() - start)
  med = {k: float(np.median(v[1])) for k, v in runs.items()}
  print('model %s %dx%d batch %d, CPU threads %s' % (
      args.model, args.size, args.size, args.batch,
      tf.config.threading.get_intra_op_parallelism_threads() or 'default'))
  print('FLOPs original %.4g  rebuilt %.4g  ratio %.3f (target %.2f, '
        'multiplier %.3f, round_to %d)' % (
            original_cost, cost, cost / original_cost, args.flop_ratio,
            multiplier, args.round_to))
  print('median latency original %.2f ms  rebuilt %.2f ms  ratio %.3f '
        '(%d interleaved repeats)' % (
            1e3 * med['original'], 1e3 * med['rebuilt'],
            med['rebuilt'] / med['original'], args.repeats))


if __name__ == '__main__':
  main()
