r"""CPU inference time of a model and of its rebuilt version at a FLOP ratio.

  python benchmarks/rebuilt_latency.py --model=MobileNetV2 --flop_ratio=0.5

The rebuilt structure is the original widths scaled by the one multiplier
that brings the FLOPs to `flop_ratio` x the original (expansion
.expand_to_cost, within 1%). The model is traced and analysed once: one
StructureCost gives the original cost, drives the search and hands its
channel model to rebuild. Both models are timed in one process by the
measurement method calibration uses (`latency.measurement.measure`): warm
(`--warmup` calls each first), in groups the kernel caches hold (two
models fit in one), repeats alternating between them, medians with their
IQR, unstable ones measured again and flagged. Threads are pinned to
`--threads` intra-op and `--inter_op_threads` inter-op before TensorFlow
starts.
"""

import argparse
import os

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.keras import structure_cost  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top,wrong-import-position
from morph_net.latency import timing  # pylint: disable=g-import-not-at-top,wrong-import-position
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
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--threads', type=int, default=0,
                      help='Intra-op threads (0: TensorFlow default).')
  parser.add_argument('--inter_op_threads', type=int, default=0,
                      help='Inter-op threads (0: TensorFlow default).')
  args = parser.parse_args()
  timing.pin_threads(args.threads, args.inter_op_threads)

  model = build(args.model, args.size)
  flops = structure_cost.StructureCost(model)
  full = flops.channels.original_structure(changeable_only=False)
  original_cost = flops.cost({})
  structure, multiplier, cost = expansion.expand_to_cost(
      flops, full, args.flop_ratio * original_cost, round_to=args.round_to)
  small = rebuild.rebuild(model, structure, channels=flops.channels)
  x = tf.constant(np.random.RandomState(0).rand(
      args.batch, args.size, args.size, 3).astype('float32'))
  calls = [timing.model_call(m, x) for m in (model, small)]
  report = measurement.measure(
      calls, ['original', 'rebuilt'], settings=measurement.MeasurementSettings(
          repeats=args.repeats, warmup=args.warmup, probe=False))
  med = dict(zip(('original', 'rebuilt'), report.values() / 1e9))
  print('model %s %dx%d batch %d, %s' % (
      args.model, args.size, args.size, args.batch, timing.describe_device()))
  print('FLOPs original %.4g  rebuilt %.4g  ratio %.3f (target %.2f, '
        'multiplier %.3f, round_to %d)' % (
            original_cost, cost, cost / original_cost, args.flop_ratio,
            multiplier, args.round_to))
  print('median latency original %.2f ms  rebuilt %.2f ms  ratio %.3f '
        '(%d interleaved repeats; IQR / median %s; flagged: %s)' % (
            1e3 * med['original'], 1e3 * med['rebuilt'],
            med['rebuilt'] / med['original'], args.repeats,
            ', '.join('%.1f%%' % (100 * m.spread)
                      for m in report.measurements),
            ', '.join(report.flagged()) or 'none'))


if __name__ == '__main__':
  main()
