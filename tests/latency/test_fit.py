"""The least-squares fit of a latency profile to measured timings."""

import numpy as np
import pytest

from morph_net import errors
from morph_net.latency import fit
from morph_net.network_regularizers import latency_profile

# ns per FLOP, ns per byte, ns per op.
_TRUE = {
    'conv': latency_profile.KindParameters(0.02, 0.3, 3000.0),
    'depthwise': latency_profile.KindParameters(0.05, 0.4, 1500.0),
    'add': latency_profile.KindParameters(0.0, 0.5, 800.0),
    'mul': latency_profile.KindParameters(0.0, 0.25, 1200.0),
}


def _synthetic_samples():
  """Timings the true profile predicts, for ops in both regimes.

  Convs and depthwise convs are memory bound below FLOPs / bytes = b / a
  (15 and 8) and compute bound above; adds and muls move bytes only. Some
  samples hold one op, others a batch-norm-like mix (3 muls, 2 adds) or a
  conv with its add.
  """
  truth = latency_profile.LatencyProfile(_TRUE)
  ops = []
  for num_bytes in (1e4, 5e4, 2e5):
    for ratio in (2.0, 5.0, 40.0, 100.0):
      ops.append([('conv', ratio * num_bytes, num_bytes)])
      ops.append([('depthwise', ratio / 3 * num_bytes, num_bytes)])
    ops.append([('add', 0.0, num_bytes)])
    ops.append([('mul', 0.0, 2 * num_bytes)])
    ops.append([('mul', 0.0, num_bytes)] * 3 + [('add', 0.0, num_bytes)] * 2)
    ops.append([('conv', 30 * num_bytes, num_bytes),
                ('add', 0.0, num_bytes / 4)])
  return [fit.Sample(o, fit.predict_sample(
      truth, fit.Sample(o, 1.0)), 'sample %d' % i)
          for i, o in enumerate(ops)]


def test_recovers_known_parameters():
  samples = _synthetic_samples()
  profile = fit.fit_profile(samples, batch_size=4, device='synthetic',
                            metadata={'model': 'none'})
  assert sorted(profile.kinds) == sorted(_TRUE)
  for kind, truth in _TRUE.items():
    assert profile.kinds[kind] == pytest.approx(truth, rel=1e-6, abs=1e-9)
    assert profile.fit(kind)['rms_relative_error'] < 1e-8
  assert profile.fit('conv')['samples'] == 15
  assert profile.batch_size == 4
  report = profile.metadata['fit']
  assert report['samples'] == len(samples) == 36
  assert report['max_relative_error'] < 1e-8
  assert report['residuals'][0]['label'] == 'sample 0'
  assert profile.metadata['model'] == 'none'
  # Kinds with no FLOPs report no compute rate.
  assert profile.kinds['add'].ns_per_flop == 0.0


def test_noisy_timings_give_close_parameters():
  samples = _synthetic_samples()
  noise = np.random.RandomState(0).uniform(0.97, 1.03, len(samples))
  noisy = [s._replace(latency_ns=s.latency_ns * n)
           for s, n in zip(samples, noise)]
  profile = fit.fit_profile(noisy)
  for kind, truth in _TRUE.items():
    assert profile.kinds[kind].ns_per_byte == pytest.approx(
        truth.ns_per_byte, rel=0.1)
  # The overhead of the convs, the bulk of the samples, is well determined.
  assert profile.kinds['conv'].overhead_ns == pytest.approx(3000.0, rel=0.2)
  assert profile.kinds['conv'].ns_per_flop == pytest.approx(0.02, rel=0.1)
  assert profile.metadata['fit']['rms_relative_error'] < 0.03


def test_bad_samples():
  with pytest.raises(errors.InvalidArgumentError,
                     match='Expected at least one measurement'):
    fit.fit_profile([])
  with pytest.raises(errors.InvalidArgumentError,
                     match=r"Invalid sample 'relu \[8\]': expected ops, a "
                     r'positive latency_ns and a positive weight.*call '
                     r'overhead'):
    fit.fit_profile([fit.Sample([('activation', 0.0, 64.0)],
                                -3.0, 'relu [8]')])
  with pytest.raises(errors.ProfileError,
                     match=r"Sample 'x' has an op of kind 'gemm', which is "
                     r'not an op kind'):
    fit.fit_profile([fit.Sample([('gemm', 1.0, 1.0)], 1.0,
                                'x')])


def test_whole_model_correction_recovers_a_known_scale_and_per_op_cost():
  """Layers timed alone follow _TRUE; whole models run them at 0.8x plus
  500 ns an op (what an isolated layer hides). The per-kind fit, which
  sees both, is a compromise between them; the correction brings the
  whole models within 1% and reports its factors."""
  samples = _synthetic_samples()
  truth = latency_profile.LatencyProfile(_TRUE)
  models = []
  for width in (1.0, 0.6, 0.3):
    ops = ([('conv', 40 * width**2 * 1e5, width * 1e5)] * 6 +
           [('depthwise', 20 * width * 1e5, width * 1e5)] * 4 +
           [('add', 0.0, width * 1e5)] * 3)
    layers = fit.predict_sample(truth, fit.Sample(ops, 1.0))
    models.append(fit.Sample(ops, 0.8 * layers + 500.0 * len(ops),
                             'model x%g' % width, 1.0, None,
                             whole_model=True))
  profile = fit.fit_profile(samples + models)
  report = profile.metadata['whole_model_correction']
  assert report['whole_models'] == 3
  assert report['scale'] == pytest.approx(0.8, rel=0.1)
  assert report['per_op_ns'] > 0.0
  assert report['rms_relative_error_after'] < 0.01
  assert report['rms_relative_error_before'] > 0.05
  for model in models:
    assert fit.predict_sample(profile, model) == pytest.approx(
        model.latency_ns, rel=0.01)
  # Every kind carries the factor and the per-op cost.
  conv = profile.kinds['conv']
  raw = fit.fit_profile(samples + models, whole_model_correction=False)
  assert conv.ns_per_flop == pytest.approx(
      report['scale'] * raw.kinds['conv'].ns_per_flop, rel=1e-9)
  assert conv.overhead_ns == pytest.approx(
      report['scale'] * raw.kinds['conv'].overhead_ns +
      report['per_op_ns'], rel=1e-9)
  assert 'whole_model_correction' not in raw.metadata
  # Without two whole models there is nothing to correct to.
  single = fit.fit_profile(samples + models[:1])
  assert 'whole_model_correction' not in single.metadata


def test_whole_model_correction_passes_through_the_anchor():
  """The original (anchor) runs 10% slower than the line the narrower
  models lie on: the corrected profile predicts it exactly and fits the
  others as well as a line through it can."""
  samples = _synthetic_samples()
  truth = latency_profile.LatencyProfile(_TRUE)
  models = []
  for width in (1.0, 0.8, 0.6, 0.3):
    ops = [('conv', 40 * width**2 * 1e5, width * 1e5)] * 6
    layers = fit.predict_sample(truth, fit.Sample(ops, 1.0))
    slow = 1.1 if width == 1.0 else 1.0
    models.append(fit.Sample(ops, slow * (0.8 * layers + 500.0 * len(ops)),
                             'model x%g' % width, 1.0, None,
                             whole_model=True, anchor=width == 1.0))
  profile = fit.fit_profile(samples + models)
  report = profile.metadata['whole_model_correction']
  assert report['anchor'] == 'model x1'
  assert fit.predict_sample(profile, models[0]) == pytest.approx(
      models[0].latency_ns, rel=1e-9)
  # Through the anchor, one parameter is free; the per-op cost stays >= 0.
  assert report['per_op_ns'] >= 0.0
  errors_after = [fit.predict_sample(profile, m) / m.latency_ns - 1.0
                  for m in models[1:]]
  assert max(abs(e) for e in errors_after) < 0.1
  # The anchor alone is enough to scale to.
  alone = fit.fit_profile(samples + models[:1])
  assert fit.predict_sample(alone, models[0]) == pytest.approx(
      models[0].latency_ns, rel=1e-9)
