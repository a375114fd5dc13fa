"""Latency calibration on Keras layers, and costs with a measured profile."""

import dataclasses
import inspect

import keras
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.latency import calibration
from morph_net.latency import timing
from morph_net.latency import variants
from morph_net.keras import model_regularizer
from morph_net.keras import structure_cost
from morph_net.keras import tracing
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import profile_resource
from morph_net.network_regularizers import latency_regularizer
from morph_net.surgery import rebuild
from morph_net.testing import latency_models


@pytest.fixture(autouse=True)
def _clear_session():
  keras.backend.clear_session()
  yield






def test_calibrate_smoke(tmp_path):
  model = latency_models.padded_mobile_model()
  profile = calibration.calibrate(
      model, batch_size=2, repeats=2, warmup=1, fractions=(1.0, 0.5),
      verbose=0, half_smallest_fraction=True)
  measured = profile.metadata['fit']['samples'] + len(
      profile.metadata['left_out'])
  # 9 layers at their widths and at their widths less one (misaligned), and
  # the whole model at x1, x0.5, x0.25 (half the smallest fraction), one
  # channel narrower per group and x0.25 rounded to 4 (the other roundings
  # are the original or x0.5).
  assert measured == (4 + 2 + 2 + 2 + 2 + 4 + 2 + 2 + 4) + 9 + 5
  assert profile.metadata['whole_model_samples'] == 5
  assert profile.metadata['misaligned_variants'] is True
  labels = [r['label'] for r in profile.metadata['fit']['residuals']]
  assert 'padded_mobile x0.50' in labels + profile.metadata['left_out']
  assert set(profile.kinds) <= {'conv', 'depthwise', 'mul', 'add',
                                'activation', 'pad', 'reduce', 'matmul',
                                'bias_add'}
  assert profile.batch_size == 2
  assert profile.metadata['layers'] == 9
  assert profile.metadata['threads'] == timing.thread_settings()
  assert profile.metadata['call_overhead_ns'] > 0
  assert 'intra-op' in profile.device
  path = calibration.save_profile(profile, str(tmp_path / 'd.json'))
  assert latency_profile.LatencyProfile.load(path) == profile
  assert 'kind' in calibration.summary(profile)
  # Timed warm in groups (the budget checked by measuring), aligned fit.
  timed = profile.metadata['measurement']
  assert timed['budget_source'] == 'probed'
  assert timed['environment']['tf_primitive_cache'] == 1024
  assert sorted(timed['spread']) == sorted(labels + profile.metadata[
      'left_out'])
  assert profile.metadata['alignment']['candidates'] == [1, 4, 8, 16, 32]
  assert ('preferred channel multiple %d (held-out median error 1: ' %
          profile.preferred_multiple) in calibration.summary(profile)


def test_calibrate_refuses_models_without_costed_layers():
  inputs = keras.Input((4,))
  model = keras.Model(inputs, keras.layers.Reshape((2, 2))(inputs))
  with pytest.raises(errors.InvalidArgumentError,
                     match="Model '.*' has no layer that runs a costed op"):
    calibration.calibrate(model, verbose=0)


def test_measure_refuses_a_whole_model_share_outside_zero_one():
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Expected a number in \(0, 1\). Received: '
                     r'whole_model_share=1.0'):
    calibration.measure(latency_models.padded_mobile_model(),
                        whole_model_share=1.0)


def test_settings_are_one_dataclass_and_keywords_replace_its_fields():
  assert [f.name for f in dataclasses.fields(
      calibration.CalibrationSettings)] == [
          'batch_size', 'repeats', 'warmup', 'fractions', 'layer_rules',
          'verbose', 'statistic', 'whole_model', 'model_structures', 'seed',
          'whole_model_share', 'clock', 'budget', 'probe', 'unstable_spread',
          'max_attempts', 'multiples', 'misaligned', 'misalignment',
          'allocator', 'half_smallest_fraction']
  for function in (calibration.measure, calibration.calibrate):
    assert list(inspect.signature(function).parameters) == [
        'model', 'batch_size', 'settings', 'options']
  settings = calibration.CalibrationSettings(
      batch_size=4, repeats=1, warmup=0, fractions=(1.0,), verbose=0,
      whole_model=False)
  samples, metadata = calibration.measure(
      latency_models.padded_mobile_model(), 2, settings, seed=5,
      statistic='min')
  assert (metadata['repeats'], metadata['warmup'], metadata['fractions'],
          metadata['statistic'], metadata['structure_seed'],
          metadata['whole_model_samples']) == (1, 0, [1.0], 'min', 5, 0)
  # batch_size 2 (the argument), not the settings' 4: the samples' ops are
  # counted at batch 2. Every layer at its widths and one narrower.
  assert len(samples) + len(metadata['left_out']) == 18
  at_batch_2 = {v.label: v.ops for group in variants.layer_variants(
      latency_models.padded_mobile_model(), 2, (1.0,), misaligned=True)
                for v in group}
  assert samples
  for sample in samples:
    assert sample.ops == at_batch_2[sample.label]
  assert settings.batch_size == 4  # Frozen: the caller's settings stay.


def test_settings_refuse_positional_settings_and_unknown_keywords():
  model = latency_models.padded_mobile_model()
  with pytest.raises(errors.InvalidArgumentTypeError,
                     match=r'Invalid value for argument `settings` of '
                     r'calibrate. Expected a CalibrationSettings; pass the '
                     r'other settings as keyword arguments \(repeats=..., '
                     r'warmup=...\). Received: 15 \(int\)'):
    calibration.calibrate(model, 2, 15)
  with pytest.raises(errors.InvalidArgumentTypeError,
                     match=r'measure got unknown keyword arguments repeat. '
                     r'Expected the fields of CalibrationSettings: '
                     r'batch_size, repeats, warmup, '):
    calibration.measure(model, repeat=3)
  with pytest.raises(errors.InvalidArgumentError,
                     match=r'Received: whole_model_share=0'):
    calibration.CalibrationSettings(whole_model_share=0)




def _kill(model):
  """Zeroes gammas: 5 of 8 channels stay in the one group (add, depthwise)."""
  for bn, keep in (('stem_bn', 5), ('dw_bn', 5), ('project_bn', 5)):
    gamma = model.get_layer(bn).gamma
    value = keras.ops.convert_to_numpy(gamma).copy()
    value[keep:] = 0.0
    gamma.assign(value)


def _predicted_by_hand(model, profile, batch_size):
  """The profile's prediction summed over the ops of `model`'s trace."""
  graph = tracing.TracedModel(model).graph
  total = 0.0
  for op in graph.get_operations():
    if latency_profile.op_kind(op.type):
      kind, flops, num_bytes = profile_resource.op_features(op, batch_size)
      total += profile.predict(kind, flops, num_bytes)
  return total


def test_cost_is_the_profiles_prediction_of_the_rebuilt_model(tmp_path):
  model = latency_models.padded_mobile_model()
  _kill(model)
  path = str(tmp_path / 'device.json')
  calibration.save_profile(latency_models.fixed_profile(4), path)
  regularizer = model_regularizer.ModelRegularizer(
      model, latency_regularizer.GammaLatencyRegularizer,
      gamma_threshold=1e-3, hardware=path, batch_size=4)
  alive = regularizer.alive_counts()
  assert alive['stem'] == 5 and alive['project'] == 5
  rebuilt = rebuild.rebuild(model, alive)
  expected = _predicted_by_hand(rebuilt, latency_models.fixed_profile(), 4)
  assert float(regularizer.cost()) == pytest.approx(expected, rel=1e-6)
  # The regularizer's own ops (morph_net_cost/add_3 ...) share the graph
  # and look like layer 'add''s scope; StructureCost costs the model's ops.
  coster = structure_cost.StructureCost(regularizer)
  assert coster(alive) == pytest.approx(expected, rel=1e-6)
  assert coster({}) == pytest.approx(_predicted_by_hand(
      model, latency_models.fixed_profile(), 4), rel=1e-6)
  term = regularizer.term()
  assert float(term) > 0
  with tf.GradientTape() as tape:
    value = regularizer.term()
  gradient = tape.gradient(value, model.get_layer('stem_bn').gamma)
  assert gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0


def test_time_interleaved_and_thread_errors():
  calls = []
  medians = timing.time_interleaved(
      [lambda: calls.append('a'), lambda: calls.append('b')], repeats=3,
      warmup=1)
  assert calls == ['a', 'b'] * 4
  assert medians.shape == (2,) and (medians > 0).all()
  with pytest.raises(errors.InvalidArgumentError,
                     match='Received: repeats=0, warmup=1'):
    timing.time_interleaved([lambda: None], repeats=0, warmup=1)
  with pytest.raises(errors.InvalidArgumentError,
                     match="Expected one of median, min. Received: "
                     "statistic='mean'"):
    timing.time_interleaved([lambda: None], 1, statistic='mean')
  assert timing.time_interleaved(
      [lambda: None], 3, statistic='min').shape == (1,)
  busy = lambda: sum(range(20000))
  cpu = timing.time_interleaved([busy], 3, clock='cpu')
  assert cpu.shape == (1,) and cpu[0] > 0
  with pytest.raises(errors.InvalidArgumentError,
                     match="Expected one of cpu, wall. Received: "
                     "clock='gpu'"):
    timing.time_interleaved([lambda: None], 1, clock='gpu')
  settings = timing.thread_settings()
  timing.pin_threads(settings['intra_op'], settings['inter_op'])
  with pytest.raises(errors.NotReadyError,
                     match=r'Cannot pin TensorFlow to 7 intra-op / 5 '
                     r'inter-op threads: the runtime already runs'):
    timing.pin_threads(7, 5)


def test_whole_models_keep_one_calls_overhead_and_layers_none(monkeypatch):
  """A deployment calls the whole model: its sample is the call's time; a
  layer's sample is its op's time, the call overhead beside it taken off."""
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  from morph_net.latency import variants as variants_lib  # pylint: disable=g-import-not-at-top

  def fake_time_variants(variants, settings=None, seed=0, verbose=0):
    del settings, seed, verbose
    times = [1000.0 * (i + 1) for i in range(len(variants))]
    overheads = [300.0] * len(variants)
    return times, overheads, measurement.MeasurementReport(
        [], [], [], 1, 'given', [], {}, {})

  monkeypatch.setattr(variants_lib, 'time_variants', fake_time_variants)
  model = latency_models.padded_mobile_model()
  samples, metadata = calibration.measure(
      model, batch_size=2, fractions=(1.0, 0.5), verbose=0,
      misaligned=False, half_smallest_fraction=True)
  layers = [s for s in samples if not s.whole_model]
  wholes = [s for s in samples if s.whole_model]
  assert [s.latency_ns for s in layers] == [
      1000.0 * (i + 1) for i in range(len(layers))]
  assert [s.latency_ns for s in wholes] == [
      1000.0 * (len(layers) + i + 1) + 300.0 for i in range(len(wholes))]
  # The whole model also at half the smallest fraction.
  assert [s.label for s in wholes] == ['padded_mobile x1.00',
                                       'padded_mobile x0.50',
                                       'padded_mobile x0.25']
  assert metadata['model_fractions'] == [1.0, 0.5, 0.25]
  assert metadata['call_overhead_ns'] == 300.0


def test_model_fractions_add_half_the_smallest():
  assert calibration.model_fractions((1.0, 0.6, 0.3)) == (1.0, 0.6, 0.3,
                                                          0.15)
  assert calibration.model_fractions((1.0,)) == (1.0, 0.5)
  assert calibration.model_fractions((1.0, 0.6, 0.3), False) == (1.0, 0.6,
                                                                 0.3)
  assert calibration.CalibrationSettings().half_smallest_fraction is False


def test_nested_models_are_calibrated_flat(monkeypatch):
  """The layers of a nested model are timed like the top level's, and the
  whole model is the flat one (same layers, same ops)."""
  from morph_net.latency import measurement  # pylint: disable=g-import-not-at-top
  from morph_net.latency import variants as variants_lib  # pylint: disable=g-import-not-at-top
  timed = []

  def fake_time_variants(variants, settings=None, seed=0, verbose=0):
    del settings, seed, verbose
    timed.extend(variants)
    return ([1000.0] * len(variants), [10.0] * len(variants),
            measurement.MeasurementReport([], [], [], 1, 'given', [], {}, {}))

  monkeypatch.setattr(variants_lib, 'time_variants', fake_time_variants)
  inner_input = keras.Input((8, 8, 4))
  inner = keras.Model(inner_input, keras.layers.Conv2D(
      6, 3, name='inner_conv')(inner_input), name='base')
  x = keras.Input((8, 8, 4))
  y = keras.layers.Conv2D(5, 1, name='head_conv')(inner(x))
  model = keras.Model(x, y, name='outer')
  samples, _ = calibration.measure(model, batch_size=1, fractions=(1.0,),
                                   verbose=0, misaligned=False,
                                   half_smallest_fraction=True)
  layers = sorted({v.layer for v in timed if v.layer is not None})
  assert layers == ['head_conv', 'inner_conv']
  wholes = [s for s in samples if s.whole_model]
  assert [s.label for s in wholes] == ['outer x1.00', 'outer x0.50']
  assert wholes[0].anchor
  assert sorted(kind for kind, _, _ in wholes[0].ops if kind == 'conv') == [
      'conv', 'conv']
