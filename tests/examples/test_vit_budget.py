"""benchmarks/vit_budget.py: the ViT's prunable structure and a tiny run."""

import json
import os
import subprocess
import sys

import pytest

from examples import datasets

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_BENCHMARK = os.path.join(_ROOT, 'benchmarks', 'vit_budget.py')


def test_heads_hidden_size_and_ffn_are_prunable_and_costed():
  import keras  # pylint: disable=g-import-not-at-top
  from benchmarks import vit_budget  # pylint: disable=g-import-not-at-top
  from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
  from morph_net.network_regularizers import flop_regularizer  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  model = vit_budget.build_model(hidden=16, heads=4, ffn_ratio=2, blocks=2)
  regularizer = morph_keras.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer, threshold=1e-3)
  # The hidden size is one group (the patch and position embeddings, every
  # residual, norm and projection); heads and FFN widths are their own.
  assert regularizer.alive_counts() == {
      'patch_embed': 16, 'pos_embed': 16, 'ffn1_0': 32, 'ffn2_0': 16,
      'ffn1_1': 32, 'ffn2_1': 16, 'logits': 10, 'mha0': 4, 'mha1': 4}
  # 49 tokens, d = 16: patch embedding 2*49*16*16; per block the attention
  # (4 heads of K = V = 4) 4*2*49*16*16 + 2*2*49*49*16 and the FFN
  # 2*2*49*16*32; the head 2*16*10. Norms and adds cost no FLOPs.
  block = 4 * 2 * 49 * 16 * 16 + 2 * 2 * 49 * 49 * 16 + 2 * 2 * 49 * 16 * 32
  assert regularizer.initial_cost == 2 * 49 * 16 * 16 + 2 * block + 2 * 16 * 10
  assert regularizer.initial_cost == 734144


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
def test_one_run_trains_rebuilds_and_is_cached(tmp_path):
  command = [sys.executable, _BENCHMARK, '--output_dir=%s' % tmp_path,
             '--train_examples=64', '--test_examples=100', '--epochs=1',
             '--finetune_epochs=1', '--hidden=16', '--batch_size=32']
  env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  first = subprocess.run(command, capture_output=True, text=True, env=env,
                         timeout=900, check=False)
  assert first.returncode == 0, first.stderr[-3000:]
  runs = tmp_path / 'runs'
  key = 'vit_h16_n64_e1_lr0.003_rms_0'
  with open(runs / (key + '_t0.006_f0.5_regularized.json')) as f:
    regularized = json.load(f)
  with open(runs / (key + '_t0.006_f0.5_rebuilt.json')) as f:
    rebuilt = json.load(f)
  with open(runs / (key + '_baseline.json')) as f:
    baseline = json.load(f)
  assert regularized['initial_cost'] == 734144
  assert regularized['target_cost'] == 0.5 * 734144
  assert len(regularized['epoch_costs']) == 1
  assert set(regularized['alive']) >= {'patch_embed', 'mha0', 'mha1',
                                       'ffn1_0', 'ffn1_1'}
  # The rebuilt model costs exactly what the trained one does.
  assert rebuilt['rebuilt_cost'] == rebuilt['final_cost_reloaded']
  assert rebuilt['final_cost_reloaded'] == regularized['final_cost']
  for accuracy in (regularized['accuracy'], rebuilt['rebuilt_accuracy'],
                   rebuilt['finetuned_accuracy'], baseline['accuracy']):
    assert 0.0 <= accuracy <= 1.0
  table = (tmp_path / 'table.md').read_text().splitlines()
  assert table[:3] == ['| quantity | value |', '|---|---|',
                       '| initial FLOPs | 734144 |']
  assert '| target FLOPs (0.50) | 367072 |' in table
  # A second invocation reuses the stored runs: the same table.
  second = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=900, check=False)
  assert second.returncode == 0, second.stderr[-3000:]
  assert second.stdout.splitlines()[-len(table):] == table


@pytest.mark.skipif(not os.path.exists(datasets.FASHION_MNIST_DIR),
                    reason='needs dataset-fashion-mnist (scripts/install.sh)')
def test_hidden_grouping_l2_is_its_own_cached_run(tmp_path):
  command = [sys.executable, _BENCHMARK, '--output_dir=%s' % tmp_path,
             '--train_examples=64', '--test_examples=100', '--epochs=1',
             '--finetune_epochs=1', '--hidden=16', '--batch_size=32',
             '--hidden_grouping=l2']
  env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep +
             os.environ.get('PYTHONPATH', ''))
  run = subprocess.run(command, capture_output=True, text=True, env=env,
                       timeout=900, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  key = 'vit_h16_n64_e1_lr0.003_rms_0_t0.006_f0.5_gl2'
  names = sorted(p.name for p in (tmp_path / 'runs').iterdir())
  assert names == ['vit_h16_n64_e1_lr0.003_rms_0_baseline.json',
                   key + '_rebuilt.json', key + '_regularized.json',
                   key + '_regularized.weights.h5']
  with open(tmp_path / 'runs' / (key + '_rebuilt.json')) as f:
    rebuilt = json.load(f)
  assert rebuilt['rebuilt_cost'] == rebuilt['final_cost_reloaded']
