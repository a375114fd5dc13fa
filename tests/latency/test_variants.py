"""The layers and whole-model variants latency calibration times."""

import re
import sys

import keras
import numpy as np
import pytest

from morph_net import errors
from morph_net.latency import variants
from morph_net.surgery import channel_model
from morph_net.testing import latency_models
from morph_net.testing import surgery_models


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def test_layer_variants_measure_every_costed_layer_at_each_width():
  groups = variants.layer_variants(
      latency_models.padded_mobile_model(), batch_size=2,
      fractions=(1.0, 0.5))
  labels = [[v.label for v in group] for group in groups]
  assert labels == [
      ['stem [3]->8', 'stem [2]->4', 'stem [3]->4', 'stem [2]->8'],
      ['stem_bn [8]->8', 'stem_bn [4]->4'],
      ['stem_relu [8]->8', 'stem_relu [4]->4'],
      ['pad [8]->8', 'pad [4]->4'],
      ['dw [8]->8', 'dw [4]->4'],
      ['project [8]->8', 'project [4]->4', 'project [8]->4',
       'project [4]->8'],
      ['add [8, 8]->8', 'add [4, 4]->4'],
      ['gap [8]->8', 'gap [4]->4'],
      ['logits [8]->4', 'logits [4]->2', 'logits [8]->2', 'logits [4]->4'],
  ]
  # stem: 8 x 8 outputs, 3 x 3 x 3 kernel, 8 filters, batch 2:
  # 2 x 2 x 64 x 27 x 8 FLOPs; 4 bytes x (216 weights + 2 x (256 x 3 + 64 x
  # 8) activations).
  assert groups[0][0].ops == [('conv', 55296.0, 11104.0)]
  assert groups[0][1].ops == [('conv', 2 * 2 * 64 * 27 * 4 * 2 / 3,
                               4.0 * (72 + 2 * (256 * 2 + 64 * 4)))]
  # Keras 3 batch norm: the scale x * (gamma / sqrt(var + eps)) and the
  # offset are the full-size ops (2 x 64 positions x 8 channels x 4 bytes
  # in and out); four ops on channel vectors.
  assert sorted(groups[1][0].ops) == sorted(
      [('add', 0.0, 64.0), ('add', 0.0, 64.0), ('add', 0.0, 8192.0),
       ('mul', 0.0, 64.0), ('mul', 0.0, 64.0), ('mul', 0.0, 8192.0)])
  assert groups[8][0].ops == [('matmul', 128.0, 224.0),
                              ('bias_add', 0.0, 64.0)]
  assert groups[2][1].model.output.shape == (2, 8, 8, 4)

def test_identical_layers_are_measured_once():
  model = surgery_models.residual_model()
  names = [g[0].layer for g in variants.layer_variants(model)]
  # b1_conv2_bn is stem_bn's twin (8 channels at 16 x 16), b1_out
  # stem_relu's, b2_conv2_bn b2_proj_bn's (12 channels at 8 x 8).
  assert names == [
      'stem', 'stem_bn', 'stem_relu', 'b1_conv1', 'b1_conv1_bn',
      'b1_conv1_relu', 'b1_conv2', 'b1_add', 'b2_conv1', 'b2_conv1_bn',
      'b2_conv1_relu', 'b2_conv2', 'b2_proj', 'b2_proj_bn', 'b2_add',
      'b2_out', 'gap', 'logits']

def test_variants_need_static_input_shapes():
  inputs = keras.Input((None, None, 3))
  model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name='c')(inputs))
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Layer 'c' \(Conv2D\) has an input of unknown "
                     r'size.*static input shape'):
    variants.layer_variants(model)

def test_model_variants_and_copies():
  model = latency_models.padded_mobile_model()
  wholes = variants.model_variants(model, 2, fractions=(1.0, 0.5))
  assert [v.label for v in wholes] == ['padded_mobile x1.00',
                                       'padded_mobile x0.50']
  assert wholes[0].model is model and wholes[0].layer is None
  assert wholes[1].model.get_layer('stem').filters == 4
  kinds = sorted({kind for kind, _, _ in wholes[0].ops})
  assert kinds == ['activation', 'add', 'bias_add', 'conv', 'depthwise',
                   'matmul', 'mul', 'pad', 'reduce']
  # The tiny model moves 124 kB per call, far below TARGET_BYTES: it runs
  # MAX_COPIES times per timed call, as a small layer does.
  assert sum(b for _, _, b in wholes[0].ops) == 123872.0
  assert variants.copies_of(wholes[0]) == variants.MAX_COPIES
  small = variants.layer_variants(model, 2, fractions=(1.0,))[2][0]
  assert small.label == 'stem_relu [8]->8'
  # 8192 bytes moved: 4e6 / 8192 runs, capped.
  assert variants.copies_of(small) == variants.MAX_COPIES
  times, overheads = variants.measure_variants(
      [small, wholes[1]], repeats=2, warmup=1)
  assert len(times) == 2
  assert list(overheads) == [(1, variants.MAX_COPIES)]
  assert variants.width_pairs((1.0, 0.6, 0.3)) == [
      (1.0, 1.0), (0.6, 0.6), (0.3, 0.3), (1.0, 0.3), (0.3, 1.0)]


def test_random_structures_scale_changeable_groups_together():
  model = latency_models.padded_mobile_model()
  channels = channel_model.analyze(model)
  structures = variants.random_structures(
      channels, 2, np.random.RandomState(3))
  # One changeable group (stem, project: 8 channels); the logits reach the
  # output. By hand: level s, then the group's factor u, per structure.
  rng = np.random.RandomState(3)
  expected = []
  for _ in range(2):
    level = rng.uniform(0.25, 1.0)
    width = int(round(8 * min(1.0, level * rng.uniform(0.75, 1.25))))
    expected.append({'stem': width, 'project': width})
  assert structures == expected == [{'stem': 6, 'project': 6},
                                    {'stem': 4, 'project': 4}]
  wholes = variants.model_variants(model, 2, fractions=(1.0,),
                                   structures=structures[:1])
  assert [v.label for v in wholes] == ['padded_mobile x1.00',
                                       'padded_mobile s0']
  assert wholes[1].model.get_layer('stem').filters == 6
  assert wholes[1].layer is None


def test_progress_bar_is_plain_text_off_a_terminal(capsys, monkeypatch):
  bar = variants.progress_bar(3, 1, 'round')  # pytest's stdout: no terminal.
  assert bar.verbose == 2
  for step in range(3):
    bar.update(step + 1)
  out = capsys.readouterr().out
  assert '\x1b' not in out and '\b' not in out
  assert re.match(r'3/3 - \d+s - ', out), out
  assert variants.progress_bar(3, 0, 'round').verbose == 0

  class Terminal:

    def isatty(self):
      return True

  monkeypatch.setattr(sys, 'stdout', Terminal())
  assert variants.progress_bar(3, 1, 'layer').verbose == 1
