"""Width-aligned profiles: the fit finds the step, costs round widths up."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.keras import expansion
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.latency import fit
from morph_net.latency import variants
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import profile_resource
from morph_net.structure import structure_files
from morph_net.structure import width_multiplier
from morph_net.surgery import rebuild
from morph_net.testing import latency_models
from morph_net.tools import export_structure


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _up(width, multiple):
  return math.ceil(width / multiple) * multiple


def _conv_ops(in_width, out_width, multiple):
  """One 3x3 conv on 8x8 positions: (kind, FLOPs, bytes) at the multiple."""
  i, o = _up(in_width, multiple), _up(out_width, multiple)
  return [('conv', 2.0 * 64 * 9 * i * o, 4.0 * (64 * i + 64 * o + 9 * i * o))]


def _synthetic_samples(step, ns_per_flop, overhead_ns, count=60, seed=0):
  """Single convs at random widths (most not multiples of anything), timed
  as the step-aligned compute time plus an overhead, exactly."""
  rng = np.random.RandomState(seed)
  samples = []
  for index in range(count):
    in_width, out_width = rng.randint(3, 70, size=2)
    aligned = {m: _conv_ops(in_width, out_width, m)
               for m in latency_profile.CANDIDATE_MULTIPLES}
    latency = ns_per_flop * aligned[step][0][1] + overhead_ns
    samples.append(fit.Sample(aligned[1], latency, 's%d' % index, 1.0,
                              aligned))
  return samples


@pytest.mark.parametrize('step', [8, 16])
def test_fit_recovers_a_known_step(step):
  samples = _synthetic_samples(step, ns_per_flop=0.05, overhead_ns=2000.0)
  profile = fit.fit_profile(samples, batch_size=1)
  assert profile.preferred_multiple == step
  conv = profile.kinds['conv']
  # Exact data: the rate and the overhead within 0.1%.
  assert conv.ns_per_flop == pytest.approx(0.05, rel=1e-3)
  assert conv.overhead_ns == pytest.approx(2000.0, rel=1e-3)
  alignment = profile.metadata['alignment']
  assert alignment['preferred_multiple'] == step
  assert alignment['candidates'] == [1, 4, 8, 16, 32]
  held_out = alignment['held_out_median_relative_error']
  assert held_out[str(step)] < 1e-3
  assert min(v for k, v in held_out.items() if k != str(step)) > 0.01
  assert profile.metadata['fit']['rms_relative_error'] < 1e-3
  assert fit.predict_sample(profile, samples[0]) == pytest.approx(
      samples[0].latency_ns, rel=1e-3)


def test_a_larger_multiple_must_predict_clearly_better():
  samples = _synthetic_samples(8, ns_per_flop=0.05, overhead_ns=2000.0)
  held_out = fit.fit_profile(samples).metadata['alignment'][
      'held_out_median_relative_error']
  # With the true step 8 at error 0, the multiple 1 at held_out['1'] > 0.01:
  # within a tolerance above that, the smaller multiple wins.
  tolerance = held_out['1'] + 1e-6
  profile = fit.fit_profile(samples, multiple_tolerance=tolerance)
  assert profile.preferred_multiple == 1
  assert profile.metadata['alignment']['tolerance'] == tolerance


def test_fit_without_alignment_keeps_multiple_1():
  samples = _synthetic_samples(1, ns_per_flop=0.05, overhead_ns=2000.0)
  assert fit.fit_profile(samples).preferred_multiple == 1
  plain = [s._replace(aligned=None) for s in samples]
  profile = fit.fit_profile(plain)
  assert profile.preferred_multiple == 1
  assert profile.metadata['alignment']['candidates'] == [1]
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected integers >= 1. Received: '
                     r'multiples=\(0, 8\)'):
    fit.fit_profile(samples, multiples=(0, 8))


def test_predicting_an_unaligned_sample_with_an_aligned_profile_fails():
  profile = latency_profile.LatencyProfile(
      {'conv': (0.05, 0.0, 10.0)}, preferred_multiple=8)
  sample = fit.Sample(_conv_ops(5, 5, 1), 1.0, 'plain')
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Sample 'plain' has no features at channel "
                     r'multiple 8 \(Sample.aligned holds none\)'):
    fit.predict_sample(profile, sample)


def test_aligned_counts():
  assert cost_forms.aligned(9, 8) == 16.0
  assert cost_forms.aligned(16, 8) == 16.0
  assert cost_forms.aligned(0, 8) == 0.0
  assert cost_forms.aligned(9, None) == 9
  assert cost_forms.aligned(9, 1) == 9
  assert cost_forms.aligned(tf.constant([1.0, 8.0, 9.0]), 8).numpy(
      ).tolist() == [8.0, 8.0, 16.0]
  form = cost_forms.Form(2.0, 1.0, 3.0, False, 10.0, 8)
  # 2 x 8 x 16 + 8 + 3 x 16 + 10 = 322; the term keeps the counts.
  assert cost_forms.evaluate([form], False, 5, 9, 0.0, 0.0) == 322.0
  assert cost_forms.evaluate([form], True, 5, 9, 1.0, 2.0) == (
      2.0 * (5 * 2.0 + 9 * 1.0) + 1.0 + 6.0)
  rows = cost_forms.evaluate_rows(
      [[form]], False, tf.constant([5.0], tf.float64),
      tf.constant([9.0], tf.float64), tf.constant([0.0], tf.float64),
      tf.constant([0.0], tf.float64))
  assert float(rows) == 322.0
  assert cost_forms.scale(form, 2.0).multiple == 8


def test_op_features_at_a_multiple():
  model = latency_models.padded_mobile_model()
  graph = tracing.TracedModel(model).graph
  conv = [op for op in graph.get_operations() if op.type == 'Conv2D'][0]
  kind, flops, num_bytes = profile_resource.op_features(conv, 1, 8)
  # stem: 3 -> 8 channels counted as 8 -> 8; 8 x 8 outputs, 3 x 3 kernel.
  assert kind == 'conv'
  assert flops == 2.0 * 64 * 9 * 8 * 8
  assert profile_resource.op_features(conv, 1)[1] == 2.0 * 64 * 9 * 3 * 8


def test_variants_carry_features_at_every_candidate_multiple():
  groups = variants.layer_variants(latency_models.padded_mobile_model(),
                                   batch_size=1, fractions=(1.0, 0.5))
  stem = groups[0][1]  # stem [2]->4
  assert sorted(stem.aligned) == [1, 4, 8, 16, 32]
  assert stem.aligned[1] == stem.ops
  assert stem.aligned[8][0][1] == 2.0 * 64 * 9 * 8 * 8


def _kill(model, keep):
  for bn in ('stem_bn', 'dw_bn', 'project_bn'):
    gamma = model.get_layer(bn).gamma
    value = keras.ops.convert_to_numpy(gamma).copy()
    value[keep:] = 0.0
    gamma.assign(value)


def _aligned_profile(multiple):
  fixed = latency_models.fixed_profile(4)
  return latency_profile.LatencyProfile(fixed.kinds, 4, 'made up',
                                        preferred_multiple=multiple)


def _by_hand(model, profile):
  graph = tracing.TracedModel(model).graph
  return sum(profile.predict(*profile_resource.op_features(
      op, 4, profile.preferred_multiple))
             for op in graph.get_operations()
             if latency_profile.op_kind(op.type))


@pytest.mark.parametrize('multiple', [4, 8])
def test_cost_of_an_aligned_profile_rounds_alive_counts_up(multiple):
  model = latency_models.padded_mobile_model()
  _kill(model, 5)  # 5 of 8 channels alive in the one group.
  profile = _aligned_profile(multiple)
  regularizer = model_regularizer.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware=profile, batch_size=4)
  assert regularizer.alive_counts()['stem'] == 5
  rebuilt = rebuild.rebuild(model, regularizer.alive_counts())
  assert float(regularizer.cost()) == pytest.approx(
      _by_hand(rebuilt, profile), rel=1e-6)
  coster = structure_cost.StructureCost(regularizer)
  full = coster({})
  # 5 channels cost as 8 (at either multiple): as much as the original.
  assert coster({'stem': 5, 'project': 5}) == pytest.approx(full, rel=1e-9)
  four = coster({'stem': 4, 'project': 4})
  if multiple == 8:
    assert four == pytest.approx(full, rel=1e-9)
  else:
    assert four < 0.9 * full
  # The regularization term keeps its gradient.
  with tf.GradientTape() as tape:
    value = regularizer.term()
  gradient = tape.gradient(value, model.get_layer('stem_bn').gamma)
  assert float(tf.reduce_sum(tf.abs(gradient))) > 0


def test_preferred_multiple_of():
  profile = _aligned_profile(8)
  model = latency_models.padded_mobile_model()
  latency = model_regularizer.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware=profile, batch_size=4)
  assert latency_profile.preferred_multiple_of(profile) == 8
  assert latency_profile.preferred_multiple_of(latency) == 8
  assert latency_profile.preferred_multiple_of(
      structure_cost.StructureCost(latency)) == 8
  assert latency_profile.preferred_multiple_of('V100') == 1
  assert latency_profile.preferred_multiple_of(None) == 1


def test_round_up():
  assert width_multiplier.round_up({'a': 9, 'b': 0, 'c': 30, 'd': 16}, 8,
                                   {'c': 30}) == {'a': 16, 'b': 0, 'c': 30,
                                                  'd': 16}
  assert width_multiplier.round_up({'a': 9}, 1) == {'a': 9}
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'`round_to`. Expected an integer >= 1. '
                     r'Received: round_to=0'):
    width_multiplier.round_up({'a': 9}, 0)


def _latency_regularizer(model, multiple):
  return model_regularizer.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware=_aligned_profile(multiple),
      batch_size=4)


def test_exported_and_expanded_structures_round_to_the_profiles_multiple(
    tmp_path):
  model = latency_models.padded_mobile_model()
  _kill(model, 3)
  aligned = _latency_regularizer(model, 4)
  assert aligned.alive_counts()['stem'] == 3
  assert aligned.aligned_counts()['stem'] == 4
  assert aligned.aligned_counts(8)['stem'] == 8
  assert aligned.aligned_counts(1) == aligned.alive_counts()
  # Capped at the layer's width: 8 channels, not 16.
  assert aligned.aligned_counts(16)['stem'] == 8
  flops = model_regularizer.ModelRegularizer(
      model, 'GammaFlopsRegularizer', gamma_threshold=1e-3)
  assert flops.aligned_counts() == flops.alive_counts()
  path = aligned.save_alive_counts(str(tmp_path), 7)
  assert structure_files.read_structure(path)['stem'] == 4
  output = str(tmp_path / 'exported.json')
  assert export_structure.export(aligned, output)['stem'] == 4
  assert structure_files.read_structure(output)['stem'] == 4
  assert export_structure.export(aligned, output, round_to=1)['stem'] == 3
  # Expansion rounds to the profile's multiple unless told otherwise:
  # 4 x 1.5 = 6 channels, rounded to 8 at a multiple of 4.
  shrunk = str(tmp_path / 'shrunk.json')
  structure_files.write_structure({'stem': 4, 'project': 4}, shrunk)
  coster = structure_cost.StructureCost(aligned)
  expanded = expansion.expand_file(coster, shrunk, output, multiplier=1.5,
                                   print_fn=lambda _: None)
  assert expanded == {'stem': 8, 'project': 8}
  assert expansion.expand_file(coster, shrunk, output, multiplier=1.5,
                               round_to=1, print_fn=lambda _: None) == {
                                   'stem': 6, 'project': 6}
  flops_coster = structure_cost.StructureCost(flops)
  assert expansion.expand_file(flops_coster, shrunk, output, multiplier=1.5,
                               print_fn=lambda _: None) == {
                                   'stem': 6, 'project': 6}
  widths, _, _ = expansion.expand_to_cost(coster, {'stem': 3, 'project': 3},
                                          coster({'stem': 6, 'project': 6}))
  assert widths['stem'] % 4 == 0


def _three_conv_model():
  inputs = keras.Input((8, 8, 3))
  x = inputs
  for index, width in enumerate((32, 32, 16)):
    x = keras.layers.Conv2D(width, 3, padding='same', use_bias=False,
                            name='conv%d' % index)(x)
    x = keras.layers.BatchNormalization(name='bn%d' % index)(x)
    x = keras.layers.ReLU(name='relu%d' % index)(x)
  x = keras.layers.GlobalAveragePooling2D(name='gap')(x)
  return keras.Model(inputs, keras.layers.Dense(4, name='logits')(x))


def _keep(model, counts):
  for index, keep in enumerate(counts):
    gamma = model.get_layer('bn%d' % index).gamma
    value = keras.ops.convert_to_numpy(gamma).copy()
    value[keep:] = 0.0
    gamma.assign(value)


def test_aligned_structure_widens_the_rounded_counts_to_the_target():
  model = _three_conv_model()
  _keep(model, (9, 17, 5))
  regularizer = _latency_regularizer(model, 8)
  assert regularizer.aligned_counts() == {'conv0': 16, 'conv1': 24,
                                          'conv2': 8}
  coster = structure_cost.StructureCost(regularizer)
  rounded = coster(regularizer.aligned_counts())
  full = coster({})
  target = rounded + 0.5 * (full - rounded)
  structure, cost = expansion.aligned_structure(regularizer, target)
  assert rounded == pytest.approx(268624.32, rel=1e-6)
  assert target == pytest.approx(368655.04, rel=1e-6)
  assert structure == {'conv0': 24, 'conv1': 32, 'conv2': 8}
  assert cost == coster(structure)
  assert cost == pytest.approx(361695.68, rel=1e-6)
  # Never above the target; 1.9% below it, as no group can grow by 8
  # channels without going above it.
  assert cost <= target
  assert coster({'conv0': 32, 'conv1': 32, 'conv2': 8}) > target
  assert coster({'conv0': 24, 'conv1': 32, 'conv2': 16}) > target
  # A looser tolerance stops earlier, still at most the target.
  loose, loose_cost = expansion.aligned_structure(regularizer, target,
                                                  tolerance=0.2)
  assert 0.8 * target <= loose_cost <= cost
  # Above the target already: the rounded counts as they are.
  assert expansion.aligned_structure(regularizer, 0.5 * rounded) == (
      regularizer.aligned_counts(), rounded)
  # Enough for the whole model: every layer at its width.
  assert expansion.aligned_structure(regularizer, 2 * full) == (
      {'conv0': 32, 'conv1': 32, 'conv2': 16}, full)
  # Multiple 1: widened by single channels.
  fine, fine_cost = expansion.widen_to_cost(coster, regularizer.alive_counts(),
                                            target, round_to=1,
                                            tolerance=0.0)
  assert fine_cost <= target
  for name, width in fine.items():
    bigger = dict(fine, **{name: width + 1})
    assert width == model.get_layer(name).filters or coster(bigger) > target
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'`target_cost`. Expected a positive number. '
                     r'Received: target_cost=0'):
    expansion.widen_to_cost(coster, fine, 0)
