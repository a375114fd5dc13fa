"""Misaligned widths: a width that is not a multiple costs a factor more.

The fit recovers a known factor from synthetic timings, profiles keep it
(format 3) and read format 2 files as before, and the regularizers' cost
and StructureCost agree with the profile's prediction at integer widths.
"""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.latency import calibration
from morph_net.latency import fit
from morph_net.latency import variants
from morph_net.network_regularizers import cost_forms
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import latency_regularizer
from morph_net.network_regularizers import profile_resource
from morph_net.surgery import rebuild
from morph_net.testing import latency_models


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield


def _up(width, multiple):
  return math.ceil(width / multiple) * multiple


def _conv_ops(in_width, out_width, multiple):
  """A 3x3 conv on 8x8 positions, then an add on its output, at the
  multiple: [(kind, FLOPs, bytes)]."""
  i, o = _up(in_width, multiple), _up(out_width, multiple)
  return [('conv', 2.0 * 64 * 9 * i * o, 4.0 * (64 * i + 64 * o + 9 * i * o)),
          ('add', 0.0, 4.0 * 3 * 64 * o)]


# The truth: aligned to 8; a misaligned conv costs 25% more, an add 10%.
_CONV = latency_profile.KindParameters(0.05, 0.0, 2000.0, 0.25)
_ADD = latency_profile.KindParameters(0.0, 0.02, 500.0, 0.1)


def _truth(step=8):
  return latency_profile.LatencyProfile({'conv': _CONV, 'add': _ADD},
                                        preferred_multiple=step)


def _samples(count=80, seed=0, step=8):
  """Convs (every third without its add) at widths half of which are
  multiples of 8 and half are not, timed exactly as the truth predicts."""
  rng = np.random.RandomState(seed)
  truth = _truth(step)
  samples = []
  for index in range(count):
    if index % 2:
      in_width, out_width = 8 * rng.randint(1, 9, size=2)
    else:
      in_width, out_width = rng.randint(3, 70, size=2)
    aligned = {m: _conv_ops(in_width, out_width, m)[:1 if index % 3 == 2
                                                   else 2]
               for m in latency_profile.CANDIDATE_MULTIPLES}
    sample = fit.Sample(aligned[1], 1.0, 's%d' % index, 1.0, aligned)
    samples.append(sample._replace(
        latency_ns=fit.predict_sample(truth, sample)))
  return samples


def test_misaligned_ops_are_those_whose_features_change_when_rounded():
  sample = _samples(2)[0]  # 47 -> 50: neither a multiple of 4 or 8.
  assert sample.ops[0][1] == 2.0 * 64 * 9 * 47 * 50
  assert fit.misaligned(sample, 1) == [False, False]
  assert fit.misaligned(sample, 8) == [True, True]
  aligned = _samples(2)[1]  # 48 -> 8: multiples of 4 and 8, not 16.
  assert aligned.ops[0][1] == 2.0 * 64 * 9 * 48 * 8
  assert fit.misaligned(aligned, 4) == [False, False]
  assert fit.misaligned(aligned, 8) == [False, False]
  # The conv's output, and so the add, is not a multiple of 16.
  assert fit.misaligned(aligned, 16) == [True, True]
  broken = aligned._replace(aligned={1: aligned.ops, 8: aligned.ops[:1]})
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Sample 's1': its features at channel multiple 8 "
                     r'are not the same ops as at 1 \(1 ops and 2; '):
    fit.misaligned(broken, 8)


def test_predict_charges_the_factor_on_the_rate_part_only():
  profile = _truth()
  # 1000 FLOPs x 0.05 = 50 ns of compute, 2000 ns per op.
  assert profile.predict('conv', 1000.0, 0.0) == 2050.0
  assert profile.predict('conv', 1000.0, 0.0, misaligned=True) == 2062.5
  # At a multiple of 1 nothing is misaligned.
  plain = latency_profile.LatencyProfile({'conv': _CONV})
  assert plain.predict('conv', 1000.0, 0.0, misaligned=True) == 2050.0
  sample = _samples(2)[0]
  rounded = sample.aligned[8]
  expected = ((1.25 * 0.05 * rounded[0][1] + 2000.0) +
              (1.1 * 0.02 * rounded[1][2] + 500.0))
  assert fit.predict_sample(profile, sample) == pytest.approx(expected,
                                                              rel=1e-12)


def test_fit_recovers_a_known_misalignment_factor():
  samples = _samples()
  profile = fit.fit_profile(samples, batch_size=1)
  assert profile.preferred_multiple == 8
  conv, add = profile.kinds['conv'], profile.kinds['add']
  assert conv.ns_per_flop == pytest.approx(0.05, rel=1e-4)
  assert conv.overhead_ns == pytest.approx(2000.0, rel=1e-4)
  assert conv.misalignment == pytest.approx(0.25, rel=1e-4)
  assert add.ns_per_byte == pytest.approx(0.02, rel=1e-4)
  assert add.overhead_ns == pytest.approx(500.0, rel=1e-4)
  assert add.misalignment == pytest.approx(0.1, rel=1e-3)
  alignment = profile.metadata['alignment']
  assert alignment['misalignment'] == 'kind'
  assert alignment['misaligned_kinds'] == ['add', 'conv']
  held_out = alignment['held_out_median_relative_error']
  assert held_out['8'] < 1e-4
  assert min(v for k, v in held_out.items() if k != '8') > 0.01
  assert profile.metadata['fit']['max_relative_error'] < 1e-4


def test_rounding_up_alone_cannot_fit_the_factor():
  samples = _samples()
  plain = fit.fit_profile(samples, misalignment='none')
  assert all(p.misalignment == 0.0 for p in plain.kinds.values())
  # A width one channel narrower than a multiple costs the multiple's
  # time: the fit without the factor misses by several percent.
  assert plain.metadata['fit']['rms_relative_error'] > 0.03
  shared = fit.fit_profile(samples, misalignment='shared')
  assert shared.preferred_multiple == 8
  factors = {k: p.misalignment for k, p in shared.kinds.items()}
  assert factors['conv'] == factors['add']  # One factor for every kind.
  assert 0.1 < factors['conv'] < 0.25
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Invalid value for argument `misalignment`. '
                     r"Expected one of kind, shared, none. Received: "
                     r"misalignment='per_op'"):
    fit.fit_profile(samples, misalignment='per_op')


def test_a_kind_always_misaligned_keeps_factor_0():
  # Every conv at odd widths: its factor cannot be told from its rate.
  samples = []
  truth = _truth()
  for index, width in enumerate(range(3, 60, 2)):
    aligned = {m: _conv_ops(width, width + 2, m)
               for m in latency_profile.CANDIDATE_MULTIPLES}
    sample = fit.Sample(aligned[1], 1.0, 'odd %d' % index, 1.0, aligned)
    samples.append(sample._replace(
        latency_ns=fit.predict_sample(truth, sample)))
  profile = fit.fit_profile(samples, multiples=(8,))
  assert profile.preferred_multiple == 8
  assert profile.kinds['conv'].misalignment == 0.0
  # ... and the rate absorbs it: the samples are still predicted exactly.
  assert profile.kinds['conv'].ns_per_flop == pytest.approx(0.0625,
                                                            rel=1e-4)
  assert profile.metadata['fit']['max_relative_error'] < 1e-4


def test_whole_model_correction_keeps_the_factors():
  samples = _samples()
  truth = _truth()
  wholes = []
  for index, (i, o) in enumerate(((64, 64), (63, 63), (40, 24), (37, 21))):
    aligned = {m: _conv_ops(i, o, m) * 4
               for m in latency_profile.CANDIDATE_MULTIPLES}
    # Weighed little in the per-kind fit, which the layers decide.
    whole = fit.Sample(aligned[1], 1.0, 'model %d' % index, 1e-3, aligned,
                       whole_model=True, anchor=index == 0)
    # The model runs 10% slower than its layers alone.
    wholes.append(whole._replace(
        latency_ns=1.1 * fit.predict_sample(truth, whole)))
  profile = fit.fit_profile(samples + wholes)
  correction = profile.metadata['whole_model_correction']
  assert correction['scale'] == pytest.approx(1.1, rel=1e-4)
  assert correction['per_op_ns'] == pytest.approx(0.0, abs=1e-2)
  assert correction['rms_relative_error_after'] < 1e-4
  raw = fit.fit_profile(samples + wholes, whole_model_correction=False)
  for kind in ('conv', 'add'):  # Relative factors: the same.
    assert profile.kinds[kind].misalignment == raw.kinds[kind].misalignment
  assert profile.kinds['conv'].misalignment == pytest.approx(0.25, rel=1e-4)
  assert profile.kinds['conv'].ns_per_flop == pytest.approx(1.1 * 0.05,
                                                           rel=1e-4)
  for whole in wholes:
    assert fit.predict_sample(profile, whole) == pytest.approx(
        whole.latency_ns, rel=1e-4)


def test_whole_models_paying_more_for_misalignment_fit_an_extra_factor():
  samples = _samples()
  # Inside a model a misaligned op pays 20% more than its layer alone:
  # conv (1.25)(1.2) - 1 = 0.5, add (1.1)(1.2) - 1 = 0.32.
  inside = latency_profile.LatencyProfile(
      {'conv': _CONV._replace(misalignment=0.5),
       'add': _ADD._replace(misalignment=0.32)}, preferred_multiple=8)
  wholes = []
  # Most at multiples of 4 that are not multiples of 8.
  for index, (i, o) in enumerate(((64, 64), (63, 63), (44, 20), (36, 28),
                                  (52, 12), (28, 44), (20, 36), (48, 16))):
    aligned = {m: _conv_ops(i, o, m) * 4
               for m in latency_profile.CANDIDATE_MULTIPLES}
    whole = fit.Sample(aligned[1], 1.0, 'model %d' % index, 1e-3, aligned,
                       whole_model=True, anchor=index == 0)
    wholes.append(whole._replace(
        latency_ns=fit.predict_sample(inside, whole)))
  profile = fit.fit_profile(samples + wholes)
  correction = profile.metadata['whole_model_correction']
  assert correction['misalignment_fitted'] is True
  assert correction['misalignment'] == pytest.approx(0.2, rel=1e-4)
  assert correction['scale'] == pytest.approx(1.0, rel=1e-4)
  assert correction['rms_relative_error_after'] < 1e-4
  assert profile.kinds['conv'].misalignment == pytest.approx(0.5, rel=1e-4)
  assert profile.kinds['add'].misalignment == pytest.approx(0.32, rel=1e-4)
  # Seven free whole models: they chose the multiple.
  alignment = profile.metadata['alignment']
  assert alignment['chosen_by'] == 'whole models'
  assert profile.preferred_multiple == 8
  whole_errors = alignment['whole_model_held_out_median_relative_error']
  assert sorted(whole_errors) == ['1', '16', '32', '4', '8']
  assert whole_errors['8'] < 1e-4
  for whole in wholes:
    assert fit.predict_sample(profile, whole) == pytest.approx(
        whole.latency_ns, rel=1e-4)
  assert alignment['whole_model_tolerance'] == 0.005
  # A tolerance above every candidate's error: the smallest multiple.
  loose = fit.fit_profile(samples + wholes, whole_model_tolerance=1.0)
  assert loose.preferred_multiple == 1
  assert loose.metadata['alignment']['chosen_by'] == 'whole models'
  assert 'extra misalignment 20.0%' in calibration.summary(profile)
  assert 'chosen by the whole models' in calibration.summary(profile)
  # Without misalignment the correction fits no extra factor.
  plain = fit.fit_profile(samples + wholes, misalignment='none')
  assert plain.metadata['whole_model_correction']['misalignment'] == 0.0
  assert plain.metadata['whole_model_correction'][
      'misalignment_fitted'] is False


def test_forms_charge_the_factor_off_the_multiples():
  form = cost_forms.Form(2.0, 1.0, 3.0, False, 10.0, 8, 0.5)
  # 5 -> 9 channels: 2 x 8 x 16 + 8 + 3 x 16 = 312 at the rounded counts,
  # misaligned: x 1.5, plus the overhead.
  assert cost_forms.evaluate([form], False, 5, 9, 0.0, 0.0) == 478.0
  # 8 -> 16: aligned, 312 + 10.
  assert cost_forms.evaluate([form], False, 8, 16, 0.0, 0.0) == 322.0
  # The term ignores the step (as the rounding).
  assert cost_forms.evaluate([form], True, 5, 9, 1.0, 2.0) == (
      2.0 * (5 * 2.0 + 9 * 1.0) + 1.0 + 6.0)
  # Dead: nothing.
  assert cost_forms.evaluate([form], False, 5, 0, 0.0, 0.0) == 0.0
  # Without a multiple the factor does nothing.
  assert cost_forms.evaluate([form._replace(multiple=None)], False, 5, 9,
                             0.0, 0.0) == 2.0 * 45 + 5 + 27 + 10
  tensor = cost_forms.evaluate([form], False, tf.constant(5.0),
                               tf.constant(9.0), 0.0, 0.0)
  assert float(tensor) == 478.0
  for alive_in, alive_out, expected in ((5.0, 9.0, 478.0),
                                        (8.0, 16.0, 322.0),
                                        (8.0, 0.0, 0.0)):
    rows = cost_forms.evaluate_rows(
        [[form]], False, tf.constant([alive_in], tf.float64),
        tf.constant([alive_out], tf.float64), tf.constant([0.0], tf.float64),
        tf.constant([0.0], tf.float64))
    assert float(rows) == expected
  assert cost_forms.scale(form, 2.0).misalignment == 0.5


def _kill(model, keep):
  for bn in ('stem_bn', 'dw_bn', 'project_bn'):
    gamma = model.get_layer(bn).gamma
    value = keras.ops.convert_to_numpy(gamma).copy()
    value[keep:] = 0.0
    gamma.assign(value)


def _misaligned_profile(multiple, factor=0.5):
  fixed = latency_models.fixed_profile(4)
  kinds = {kind: p._replace(misalignment=factor)
           for kind, p in fixed.kinds.items()}
  return latency_profile.LatencyProfile(kinds, 4, 'made up',
                                        preferred_multiple=multiple)


def _by_hand(model, profile):
  """The profile's prediction of every costed op of the model's trace."""
  graph = tracing.TracedModel(model).graph
  total = 0.0
  for op in graph.get_operations():
    if latency_profile.op_kind(op.type):
      plain = profile_resource.op_features(op, 4)
      rounded = profile_resource.op_features(op, 4,
                                             profile.preferred_multiple)
      total += profile.predict(*rounded, misaligned=rounded != plain)
  return total


@pytest.mark.parametrize('keep', [4, 5])
def test_regularizer_and_structure_cost_agree_with_the_profile(keep):
  model = latency_models.padded_mobile_model()
  _kill(model, keep)
  profile = _misaligned_profile(4)
  regularizer = model_regularizer.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware=profile, batch_size=4)
  assert regularizer.alive_counts()['stem'] == keep
  rebuilt = rebuild.rebuild(model, regularizer.alive_counts())
  expected = _by_hand(rebuilt, profile)
  assert float(regularizer.cost()) == pytest.approx(expected, rel=1e-6)
  coster = structure_cost.StructureCost(regularizer)
  assert coster({'stem': keep, 'project': keep}) == pytest.approx(
      expected, rel=1e-6)
  full = coster({})
  assert full == pytest.approx(_by_hand(model, profile), rel=1e-6)
  # 5 of 8 channels cost as 8 and misaligned: more than the original; 4
  # are a multiple of 4: less.
  if keep == 5:
    assert expected > full
  else:
    assert expected < full
  with tf.GradientTape() as tape:
    value = regularizer.term()
  gradient = tape.gradient(value, model.get_layer('stem_bn').gamma)
  assert float(tf.reduce_sum(tf.abs(gradient))) > 0


# ---------------------------------------------------------------- files.


def _version_2_data():
  """A profile as version 2 wrote it (before misalignment)."""
  return {'format': 'morph_net.latency_profile', 'version': 2,
          'batch_size': 8, 'device': 'cpu', 'preferred_multiple': 8,
          'kinds': {'conv': {'ns_per_flop': 0.05, 'ns_per_byte': 0.1,
                             'overhead_ns': 4000.0,
                             'fit': {'samples': 3,
                                     'rms_relative_error': 0.02}},
                    'add': {'ns_per_flop': 0.0, 'ns_per_byte': 0.02,
                            'overhead_ns': 500.0}},
          'metadata': {'model': 'm'}}


def test_round_trip_keeps_the_factors(tmp_path):
  profile = latency_profile.LatencyProfile(
      {'conv': _CONV, 'add': dict(_ADD._asdict(), fit={'samples': 2})},
      batch_size=8, device='cpu', preferred_multiple=8)
  path = tmp_path / 'misaligned.json'
  path.write_text(profile.to_json())
  loaded = latency_profile.LatencyProfile.load(str(path))
  assert loaded == profile
  assert loaded.kinds['conv'] == latency_profile.KindParameters(
      0.05, 0.0, 2000.0, 0.25)
  assert loaded.kinds['conv'].misalignment == 0.25
  assert loaded.fit('add') == {'samples': 2}
  data = json.loads(path.read_text())
  assert data['version'] == latency_profile.VERSION == 3
  assert data['kinds']['conv']['misalignment'] == 0.25
  assert data['kinds']['add']['misalignment'] == 0.1


def test_version_2_files_load_with_factor_0(tmp_path):
  path = tmp_path / 'v2.json'
  path.write_text(json.dumps(_version_2_data()))
  loaded = latency_profile.LatencyProfile.load(str(path))
  assert loaded.preferred_multiple == 8
  assert loaded.kinds == {
      'conv': latency_profile.KindParameters(0.05, 0.1, 4000.0, 0.0),
      'add': latency_profile.KindParameters(0.0, 0.02, 500.0, 0.0)}
  assert loaded.fit('conv') == {'samples': 3, 'rms_relative_error': 0.02}
  assert loaded.metadata == {'model': 'm'}
  # Costs as version 2 did: the rounded-up width, no factor.
  assert loaded.predict('conv', 1000.0, 0.0, misaligned=True) == 4050.0
  # Written back as version 3, with the factors.
  data = loaded.to_dict()
  assert data['version'] == 3
  assert data['kinds']['conv']['misalignment'] == 0.0
  assert latency_profile.LatencyProfile.from_dict(data) == loaded


def test_bad_misalignment_fields_are_named(tmp_path):
  data = _version_2_data()
  data['version'] = 3
  path = tmp_path / 'v3.json'
  path.write_text(json.dumps(data))
  with pytest.raises(errors.ProfileError,
                     match=r"v3.json': field kinds.add.misalignment is "
                     r'missing: a version 3 profile records, per kind, the '
                     r'factor p'):
    latency_profile.LatencyProfile.load(str(path))
  for bad in (-0.1, float('nan'), 'high', True):
    data = _version_2_data()
    data['version'] = 3
    data['kinds']['add']['misalignment'] = 0.0
    data['kinds']['conv']['misalignment'] = bad
    with pytest.raises(errors.ProfileError,
                       match=r'kinds.conv.misalignment must be a finite '
                       r'number >= 0'):
      latency_profile.LatencyProfile.from_dict(data)
  with pytest.raises(errors.ProfileError,
                     match=r'kinds.conv: expected \{ns_per_flop, ns_per_byte, '
                     r'overhead_ns\} or a KindParameters. Received: '
                     r'\(1.0, 2.0\)'):
    latency_profile.LatencyProfile({'conv': (1.0, 2.0)})
  four = latency_profile.LatencyProfile({'conv': (1.0, 2.0, 3.0, 0.5)})
  assert four.kinds['conv'].misalignment == 0.5


# ------------------------------------------------------------ calibration.


def test_layer_and_model_variants_at_misaligned_widths():
  model = latency_models.padded_mobile_model()
  groups = variants.layer_variants(model, batch_size=2,
                                   fractions=(1.0, 0.5), misaligned=True)
  labels = [[v.label for v in group] for group in groups]
  assert labels == [
      ['stem [3]->8', 'stem [2]->4', 'stem [3]->4', 'stem [2]->8',
       'stem [2]->7'],
      ['stem_bn [8]->8', 'stem_bn [4]->4', 'stem_bn [7]->7'],
      ['stem_relu [8]->8', 'stem_relu [4]->4', 'stem_relu [7]->7'],
      ['pad [8]->8', 'pad [4]->4', 'pad [7]->7'],
      ['dw [8]->8', 'dw [4]->4', 'dw [7]->7'],
      ['project [8]->8', 'project [4]->4', 'project [8]->4',
       'project [4]->8', 'project [7]->7'],
      ['add [8, 8]->8', 'add [4, 4]->4', 'add [7, 7]->7'],
      ['gap [8]->8', 'gap [4]->4', 'gap [7]->7'],
      ['logits [8]->4', 'logits [4]->2', 'logits [8]->2', 'logits [4]->4',
       'logits [7]->3'],
  ]
  assert groups[0][4].ops[0][1] == 2 * 2 * 64 * 9 * 2 * 7
  structures = [{'stem': 3, 'project': 3}, {'stem': 6, 'project': 6}]
  wholes = variants.model_variants(model, 2, fractions=(1.0, 0.5, 0.25),
                                   misaligned=True, structures=structures)
  # Rounded to 8, 16 or 32, x0.50 and x0.25 are the original (skipped);
  # x0.50 rounded to 4 is x0.50 (4 channels), x0.25 rounded to 4 is not
  # (2). The structures rounded up to 4 and 8 in turn, capped at 8.
  assert [v.label for v in wholes] == [
      'padded_mobile x1.00', 'padded_mobile x0.50', 'padded_mobile x0.25',
      'padded_mobile x1.00 -1', 'padded_mobile x0.25 /4',
      'padded_mobile s0', 'padded_mobile s1', 'padded_mobile s0 /4',
      'padded_mobile s1 /8']
  assert [v.rounded_to for v in wholes] == [1, 1, 1, 1, 4, 1, 1, 4, 8]
  assert wholes[3].model.get_layer('stem').filters == 7
  assert wholes[3].model.get_layer('project').filters == 7
  assert wholes[3].layer is None
  assert wholes[4].model.get_layer('stem').filters == 4
  assert wholes[2].model.get_layer('stem').filters == 2
  assert [(v.model.get_layer('stem').filters,
           v.model.get_layer('project').filters) for v in wholes[5:]] == [
               (3, 3), (6, 6), (4, 4), (8, 8)]


def test_calibration_settings_misalignment():
  settings = calibration.CalibrationSettings()
  assert settings.misaligned is True
  assert settings.misalignment == 'kind'
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Invalid value for argument `misalignment`. '
                     r'Expected one of kind, shared, none. Received: '
                     r"misalignment='all'"):
    calibration.CalibrationSettings(misalignment='all')
  profile = latency_profile.LatencyProfile(
      {'conv': _CONV, 'add': _ADD}, preferred_multiple=8)
  lines = calibration.summary(profile).splitlines()
  assert lines[0].split() == ['kind', 'ns/FLOP', 'ns/byte', 'overhead',
                              'ns', 'misalign', 'samples', 'rms', 'err']
  assert lines[2].split()[:5] == ['conv', '0.05', '0', '2000.0', '25.0%']


def _whole(index, widths, truth, rounded_to=1):
  """A whole model of a conv per (in, out) of `widths` (each with its add),
  four times, timed as `truth` predicts."""
  aligned = {m: [op for i, o in widths for op in _conv_ops(i, o, m)] * 4
             for m in latency_profile.CANDIDATE_MULTIPLES}
  whole = fit.Sample(aligned[1], 1.0, 'model %d' % index, 1e-3, aligned,
                     whole_model=True, anchor=index == 0,
                     rounded_to=rounded_to)
  return whole._replace(latency_ns=fit.predict_sample(truth, whole))


def test_whole_models_rounded_to_a_multiple_must_be_predicted_at_it():
  # The truth is aligned to 8; the layers and most whole models run widths
  # that are multiples of 8 or 8k+5..8k+7 (which round up to the same
  # width at 4 and at 8), so only whole models rounded to 4 (8k+4, the
  # structures a profile at 4 makes) tell 4 from 8.
  truth = _truth(8)
  rng = np.random.RandomState(3)
  layers = []
  for index in range(60):
    if index % 2:
      i, o = 8 * rng.randint(1, 9, size=2)
    else:
      i, o = 8 * rng.randint(0, 8, size=2) + rng.randint(5, 8, size=2)
    aligned = {m: _conv_ops(i, o, m) for m in
               latency_profile.CANDIDATE_MULTIPLES}
    sample = fit.Sample(aligned[1], 1.0, 's%d' % index, 1.0, aligned)
    layers.append(sample._replace(
        latency_ns=fit.predict_sample(truth, sample)))
  plain = [((64, 64), (64, 64)), ((63, 63), (63, 63)), ((37, 22), (31, 45)),
           ((23, 46), (39, 14)), ((47, 30), (21, 15)), ((40, 24), (32, 48)),
           ((16, 40), (56, 24)), ((29, 53), (13, 38)), ((48, 16), (8, 32)),
           ((55, 7), (45, 62)), ((24, 56), (40, 16))]
  wholes = [_whole(i, w, truth) for i, w in enumerate(plain)]
  # Rounded to 4: one conv each at a width 8k+4.
  by_four = [((64, 64), (64, 64), (64, 64), (64, 20)),
             ((48, 48), (48, 48), (48, 44), (48, 48))]
  wholes += [_whole(len(plain) + i, w, truth, rounded_to=4)
             for i, w in enumerate(by_four)]
  profile = fit.fit_profile(layers + wholes)
  alignment = profile.metadata['alignment']
  assert alignment['chosen_by'] == 'whole models'
  medians = alignment['whole_model_held_out_median_relative_error']
  rounded = alignment['rounded_held_out_median_relative_error']
  # The median over all the whole models cannot tell 4 from 8 (0.2%: it
  # chose 4 before the rounded ones counted) ...
  assert medians['4'] == pytest.approx(0.0021, abs=1e-4)
  assert medians['8'] < 1e-6
  # ... the two rounded to 4 are predicted far too fast at 4.
  assert sorted(rounded) == ['4']
  assert rounded['4'] == pytest.approx(0.0606, abs=1e-4)
  assert alignment['criterion']['4'] == rounded['4']
  assert alignment['criterion']['8'] == medians['8']
  assert profile.preferred_multiple == 8
  for whole in wholes:
    assert fit.predict_sample(profile, whole) == pytest.approx(
        whole.latency_ns, rel=1e-4)
  assert 'rounded to each multiple 4: %.1f%%' % (
      100 * rounded['4']) in calibration.summary(profile)
  # Without the rounded ones' error (as before) the median chose 4.
  old = fit.fit_profile(layers + [w._replace(rounded_to=1) for w in wholes])
  assert old.preferred_multiple == 4
  assert old.metadata['alignment']['rounded_held_out_median_relative_error'
                                  ] == {}


def test_a_correction_through_the_anchor_at_its_largest_scale_has_no_overhead():
  # The free fit wants s = 0.85, above t0 / p0: s is capped there, and
  # t0 - (t0 / p0) p0 rounds to -1.8e-15 at these values; g must be 0,
  # not a negative overhead the profile would refuse.
  t0, p0 = 15.191975453495594, 94.5222227879088
  assert t0 - (t0 / p0) * p0 < 0
  scale, per_op = fit._through_anchor(
      np.array([t0, 100.0]), np.array([p0, p0 + 100.0]),
      np.array([1.0, 1.0]), 0)
  assert scale == t0 / p0
  assert per_op == 0.0


def test_the_correction_at_a_multiple_ignores_whole_models_rounded_to_another():
  # The truth has no alignment: the free whole models are predicted exactly
  # at multiple 1. Two whole models rounded to 8 run 50% slower than that
  # (an effect the profile at 1 cannot have): they must not pull the
  # correction's scale at 1.
  truth = _truth(1)
  layers = _samples(count=60, seed=5, step=1)
  plain = [((64, 64), (64, 64)), ((37, 22), (31, 45)), ((23, 46), (39, 14)),
           ((47, 30), (21, 15)), ((16, 40), (56, 24)), ((29, 53), (13, 38))]
  wholes = [_whole(i, w, truth) for i, w in enumerate(plain)]
  slow = [_whole(len(plain) + i, w, truth, rounded_to=8)
          for i, w in enumerate([((40, 24), (32, 48)), ((48, 16), (8, 32))])]
  slow = [w._replace(latency_ns=1.5 * w.latency_ns) for w in slow]
  profile = fit.fit_profile(layers + wholes + slow, multiples=(1,))
  assert profile.preferred_multiple == 1
  assert profile.metadata['whole_model_correction']['whole_models'] == 6
  for whole in wholes:
    assert fit.predict_sample(profile, whole) == pytest.approx(
        whole.latency_ns, rel=1e-4)
  # Counted as free models (as before), they pull every prediction up.
  pulled = fit.fit_profile(
      layers + wholes + [w._replace(rounded_to=1) for w in slow],
      multiples=(1,))
  assert pulled.metadata['whole_model_correction']['whole_models'] == 8
  errors = [fit.predict_sample(pulled, w) / w.latency_ns - 1 for w in wholes]
  assert max(errors) > 0.05
