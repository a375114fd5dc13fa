"""The latency-target use case end to end on a tiny budget."""

import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

_TINY = (
    'load_data.train_examples = 256',
    'load_data.test_examples = 128',
    'small_resnet.widths = (8, 16)',
    'small_resnet.stem_width = 8',
    'shrink/train.epochs = 1',
    'retrain/train.epochs = 1',
    'shrink/train.batch_size = 64',
    'retrain/train.batch_size = 64',
    'shrink/train.export_every_n_steps = 2',
    'run_seed.batch_size = 4',
    'calibration.repeats = 2',
    'calibration.model_structures = 1',
    'match_latency.repeats = 3',
    'match_latency.tolerance = 0.2',
)


def test_tiny_run_writes_the_report(tmp_path):
  output = str(tmp_path / 'out')
  args = ['--gin_file=examples/configs/latency_target.gin',
          '--output_dir=' + output, '--seeds=0']
  args += ['--gin_bindings=' + b for b in _TINY]
  env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''), TF_CPP_MIN_LOG_LEVEL='2',
             CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, '-m', 'examples.experiment.latency_target'] + args,
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  with open(os.path.join(output, 'profile.json')) as f:
    profile = json.load(f)
  assert profile['format'] == 'morph_net.latency_profile'
  assert profile['batch_size'] == 4
  with open(os.path.join(output, 'report.json')) as f:
    report = json.load(f)
  result = report['0']
  assert set(result) == {'latency', 'flops'}
  assert 0.0 <= result['latency']['test_accuracy'] <= 1.0
  assert result['latency']['predicted_latency_ms'] > 0
  assert result['flops']['multiplier'] > 0
  assert os.path.exists(os.path.join(output, 'seed_0', 'flops', 'structures',
                                     'matched.json'))
  with open(os.path.join(output, 'report.md')) as f:
    assert 'at equal measured latency' in f.read()
