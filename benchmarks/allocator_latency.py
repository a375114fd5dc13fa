r"""A model's latency with the C library's allocator as it is, and steady.

  python3 benchmarks/allocator_latency.py --model=MobileNetV2 --size=96

Each allocator setting (`timing.ALLOCATORS`) is measured in a fresh child
process (so nothing ran before it): the model timed alone by
`measurement.measure` (warm, `--repeats` rounds, median with its IQR),
`--measurements` times one after another, then once more after
`--variants` other calls (the model's own layers, each called alone, as
calibration's layer variants are) ran in the same process. With glibc's
defaults the first figures are slower and the last depends on those other
calls; steady, all agree (docs/guides/latency.md, "The allocator").
Threads are pinned to `--threads` intra-op and `--inter_op_threads`
inter-op before TensorFlow starts.
"""

import argparse
import json
import os
import subprocess
import sys

if __package__ in (None, ''):  # Run as a script: the repository's packages.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='MobileNetV2',
                      help='A keras.applications model.')
  parser.add_argument('--size', type=int, default=96)
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--measurements', type=int, default=4)
  parser.add_argument('--variants', type=int, default=40,
                      help='Layers of the model called alone before the '
                      'last measurement.')
  parser.add_argument('--threads', type=int, default=1)
  parser.add_argument('--inter_op_threads', type=int, default=1)
  parser.add_argument('--allocator', default=None,
                      help='Internal: the child process of one setting.')
  return parser.parse_args(argv)


def child(args):
  """Prints one JSON line: the medians (ms) and IQRs of one setting."""
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  timing.pin_threads(args.threads, args.inter_op_threads)
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  model = getattr(keras.applications, args.model)(
      weights=None, classes=10, input_shape=(args.size, args.size, 3))
  rng = np.random.RandomState(0)

  def call_of(m, shape):
    return timing.model_call(m, rng.rand(args.batch_size, *shape).astype(
        np.float32))

  settings = measurement.MeasurementSettings(
      repeats=args.repeats, allocator=args.allocator, probe=False)
  original = call_of(model, (args.size, args.size, 3))

  def measured():
    report = measurement.measure([original], ['original'], None, settings)
    m = report.measurements[0]
    return {'ms': m.value_ns / 1e6, 'iqr_ms': (m.q3_ns - m.q1_ns) / 1e6}

  alone = [measured() for _ in range(args.measurements)]
  others = []
  for layer in model.layers:
    if len(others) == args.variants:
      break
    if not layer.weights or isinstance(layer.input, (list, tuple)):
      continue
    x = keras.Input(tuple(layer.input.shape[1:]))
    others.append(call_of(keras.Model(x, layer(x)), tuple(
        layer.input.shape[1:])))
  measurement.measure(others, settings=measurement.MeasurementSettings(
      repeats=3, allocator=args.allocator, probe=False))
  after = measured()
  print(json.dumps({'allocator': timing.allocator_settings(),
                    'alone': alone, 'after_others': after,
                    'others': len(others)}))


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  if args.allocator:
    child(args)
    return
  from morph_net.latency import timing  # pylint: disable=g-import-not-at-top
  print('%s %dx%d, batch %d, %d intra-op / %d inter-op threads, median of '
        '%d rounds; load average %s' % (
            args.model, args.size, args.size, args.batch_size, args.threads,
            args.inter_op_threads, args.repeats,
            ' '.join('%.2f' % v for v in os.getloadavg())))
  print('%-8s %-34s %s' % ('setting', 'alone (ms, each measurement)',
                           'after the other calls (ms)'))
  for mode in timing.ALLOCATORS:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__)] + argv +
        ['--allocator=%s' % mode], check=True, capture_output=True,
        text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print('%-8s %-34s %.2f (%d calls before)' % (
        mode, ' '.join('%.2f' % m['ms'] for m in result['alone']),
        result['after_others']['ms'], result['others']))


if __name__ == '__main__':
  main()
