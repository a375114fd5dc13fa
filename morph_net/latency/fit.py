"""Fits a LatencyProfile to measured latencies (least squares, scipy).

A measurement (`Sample`) is the latency of a small program -- one Keras layer
at some widths, as the calibration runs it -- and the (kind, FLOPs, bytes)
of every costed op it runs (`profile_resource.op_features`). The model of a
sample is the profile's prediction summed over its ops,

  t = sum over ops of max(a_k x FLOPs, b_k x bytes) + c_k   (k: the op's kind),

and the fit finds a_k, b_k, c_k >= 0 for every kind that minimise the sum of
squared relative errors w x (pred - t) / t (w: the sample's weight, 1 by
default), so a 50 us layer weighs as much as a 5 ms one and the per-op
overheads c_k are fitted from the small ones. The
start is the non-negative linear fit of the model with the max replaced by a
sum (`scipy.optimize.nnls`); `scipy.optimize.least_squares` (trust region
reflective, bounds >= 0, analytic Jacobian of the piecewise-linear model)
refines it. Parameters are fitted in units of each kind's median FLOPs and
bytes so that all are of order one.

Alignment: a sample may carry its ops' features at channel counts rounded
up to each of several multiples (`Sample.aligned`, {multiple: ops}). The
fit then chooses the profile's `preferred_multiple` among `multiples` by
held-out error: for each candidate, `folds`-fold cross-validation (every
k-th sample held out in turn) of the fit above on that candidate's
features; the smallest candidate whose held-out error (the median
absolute relative error of the held-out samples) is within
`multiple_tolerance` of the least wins, and the profile is fitted on all
samples at it. The
held-out errors are in the report ('alignment').

Misalignment: a kernel runs the channels left over after the last full
block in a slower tail loop (or pads them), so a width that is not a
multiple costs more than the multiple above it: on an AMD EPYC (TensorFlow
2.21 CPU, one thread, 96x96, batch 8) MobileNetV2 with every channel group
one channel narrower ran 17% slower than the original (36.7 vs 31.4 ms)
and every group at 0.9 of its width rounded to the nearest integer 9%
slower (34.2 ms), while rounded down to multiples of 8 it ran 10% faster
(28.4 ms). Rounding counts up alone makes 143 channels cost as 144, so
the fit also gives every kind k a factor p_k >= 0: at a multiple m > 1,
an op any of whose channel counts is not a multiple of m (its features at
m differ from those at 1; `misaligned`) costs

  (1 + p_k) x max(a_k x FLOPs_m, b_k x bytes_m) + c_k,

fitted with the rates (`misalignment='kind'`; 'shared': one p for every
kind; 'none': p = 0). p_k is fitted only for a kind with both aligned and
misaligned ops among the samples (else it cannot be told from a_k and b_k,
and stays 0). The multiple is chosen by held-out error with this model.

Whole-model correction: a layer timed alone and the same layer inside a
whole model do not cost the same (the model's ops share caches and the
executor, and a model pays per-op costs an isolated layer hides): on
MobileNetV2 (96x96, batch 8, wall clock, AMD EPYC) the per-kind fit above
predicted the original model 16% too slow and structures with 10-20% of its
FLOPs 20-30% too fast, although it ranked them right (Spearman 0.98). When
at least two samples are whole models (`Sample.whole_model`), the fitted
profile is then corrected to them: one factor `s` on every kind's rates
and overhead, and one overhead `g` added to every op,

  t_model = s x (sum over ops of the profile's prediction) + g x ops,

with s, g >= 0 minimising the whole models' squared relative errors
(`scipy.optimize.nnls`). A whole model marked `anchor` (calibration marks
the original) is predicted exactly: the fit passes through it and
minimises the others' errors, as FLOPs or a roofline scaled to the
original are exact there (on ResNet50 at 64x64 the original runs slower
per FLOP than any narrower structure, and the free fit left it 14% under).
At a multiple above 1 (misalignment not 'none') the correction also fits
an extra factor q >= 0 on the misaligned ops' rate parts M,

  t_model = s x (P + q x M) + g x ops,

when the whole models run misaligned ops and at least two besides the
anchor (three without one) are free to fit it: a layer timed alone at a
width one narrower need not pay what the same layer pays inside a model.
Every kind's misalignment p then becomes (1 + p)(1 + q) - 1.
All stay in the profile's format (rates, per-op overheads and
misalignment factors), so every cost built on it, the regularizers'
included, predicts whole models. The factors and the errors before and
after are in the report ('whole_model_correction').

With at least three whole models besides the anchor (four without one),
the multiple is chosen by their held-out error instead: for each
candidate, the per-kind fit on all samples, then every free whole model
predicted by the correction fitted without it (median absolute relative
error; smallest candidate within `whole_model_tolerance` of the least), as a
profile is meant to predict whole models and the layers' median can hide
what a model pays for its misaligned widths. A candidate m above 1 must
also predict the whole models rounded to m on purpose
(`Sample.rounded_to`; calibration's '/m' variants): the structures a
profile at m makes have such widths, and a few of them cannot move the
median of all. Its held-out error is the larger of the two medians (all
free whole models; those rounded to m). On an AMD EPYC (MobileNetV2 at
32x32, batch 64) widths that are multiples of 4 but not 8 ran 9-10%
slower than the same rounded up to 8: with whole models rounded to 8
only, the median chose 4 (3.6% against 3.3% at 8, within the tolerance)
and the profile predicted its own structures 14-16% too fast. All the
errors are in the report ('alignment', 'chosen_by').
"""

import collections
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from morph_net import errors
from morph_net.network_regularizers import latency_profile

__all__ = ['DEFAULT_MULTIPLES', 'MISALIGNMENT_MODES', 'Sample', 'ops_at',
           'misaligned', 'fit_profile', 'predict_sample']

DEFAULT_MULTIPLES = latency_profile.CANDIDATE_MULTIPLES
# How the fit models widths that are not multiples (module docstring).
MISALIGNMENT_MODES = ('kind', 'shared', 'none')
# The start of a fitted misalignment factor.
_START_MISALIGNMENT = 0.01
# The largest extra misalignment factor the whole-model correction tries.
_MAX_EXTRA_MISALIGNMENT = 4.0
# Whole models besides the anchor (or in all, without one) that let the
# whole-model held-out error choose the multiple.
_MIN_HELD_OUT_WHOLES = 3

# Folds of the cross-validation that chooses the multiple.
_FOLDS = 5

# ops: [(kind, FLOPs, bytes)]; latency_ns: the measured time; label: what
# ran; weight: the factor of its relative residual in the least squares;
# aligned: {multiple: ops at channel counts rounded up to it}, or None;
# whole_model: whether it is a whole model; anchor: the whole model the
# profile must predict exactly, e.g. the original (see the whole-model
# correction); rounded_to: the multiple a whole model's widths were rounded
# to on purpose (1: not rounded; see the whole-model held-out error).
Sample = collections.namedtuple(
    'Sample', ['ops', 'latency_ns', 'label', 'weight', 'aligned',
               'whole_model', 'anchor', 'rounded_to'],
    defaults=('', 1.0, None, False, False, 1))


def ops_at(sample: Sample, multiple: int):
  """The sample's ops at channel counts rounded up to `multiple`.

  Raises:
    InvalidArgumentError: for a multiple above 1 the sample has no
      features at.
  """
  if multiple == 1 and not (sample.aligned and 1 in sample.aligned):
    return sample.ops
  if not sample.aligned or multiple not in sample.aligned:
    raise errors.InvalidArgumentError(
        'Sample %r has no features at channel multiple %d (Sample.aligned '
        'holds %s). Trace it with the multiples the profile uses.' % (
            sample.label, multiple,
            sorted(sample.aligned) if sample.aligned else 'none'))
  return sample.aligned[multiple]


def misaligned(sample: Sample, multiple: int) -> List[bool]:
  """Per op of the sample: whether a channel count is not a multiple.

  An op's FLOPs and bytes depend on all its channel counts, so a count
  that is not a multiple of `multiple` is one whose rounding up changes
  the op's features: the op is misaligned iff its features at `multiple`
  differ from those at 1 (`ops_at`).

  Raises:
    InvalidArgumentError: for a multiple the sample has no features at,
      or features at it that are not op for op those at 1.
  """
  plain = ops_at(sample, 1)
  if multiple == 1:
    return [False] * len(plain)
  rounded = ops_at(sample, multiple)
  if len(rounded) != len(plain) or any(
      a[0] != b[0] for a, b in zip(rounded, plain)):
    raise errors.InvalidArgumentError(
        'Sample %r: its features at channel multiple %d are not the same '
        'ops as at 1 (%d ops and %d; Sample.aligned[m] must list the ops of '
        'Sample.ops in order). Trace them from the same graph.' % (
            sample.label, multiple, len(rounded), len(plain)))
  return [a != b for a, b in zip(rounded, plain)]


def predict_sample(profile: latency_profile.LatencyProfile,
                   sample: Sample) -> float:
  """The profile's prediction of one sample, in ns.

  At the profile's `preferred_multiple` (`ops_at`), each misaligned op
  (`misaligned`) costing its kind's misalignment factor.
  """
  multiple = profile.preferred_multiple
  return sum(profile.predict(kind, flops, num_bytes, flag)
             for (kind, flops, num_bytes), flag in zip(
                 ops_at(sample, multiple), misaligned(sample, multiple)))


def _check_samples(samples: Sequence[Sample], multiple: int = 1
                   ) -> List[str]:
  if not samples:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `samples`. Expected at least one '
        'measurement. Received: samples=%r' % (samples,))
  kinds = set()
  for sample in samples:
    if not sample.ops or not sample.latency_ns > 0 or not sample.weight > 0:
      raise errors.InvalidArgumentError(
          'Invalid sample %r: expected ops, a positive latency_ns and a '
          'positive weight. A measurement at or below the call overhead '
          'cannot be fitted; measure with more repeats or a larger batch.' %
          (sample.label,))
    for kind, _, _ in ops_at(sample, multiple):
      if kind not in latency_profile.OP_KINDS:
        raise errors.ProfileError(
            'Sample %r has an op of kind %r, which is not an op kind. '
            'Expected kinds among %s.' % (sample.label, kind,
                                          ', '.join(latency_profile.OP_KINDS)))
      kinds.add(kind)
  return sorted(kinds)


class _Design(object):
  """The samples as arrays: per (sample, kind), FLOPs and bytes per op.

  The parameters x are (a, b, c) per kind, then the misalignment factors
  (`penalty_of[kind]`: the kind's index among them, -1 for none).
  """

  def __init__(self, samples, kinds, multiple=1, misalignment='kind'):
    self.kinds = kinds
    index = {kind: i for i, kind in enumerate(kinds)}
    ops = [ops_at(s, multiple) for s in samples]
    flops, num_bytes = [], []
    for kind in kinds:
      values = [(f, b) for sample_ops in ops for k, f, b in sample_ops
                if k == kind]
      flops.append(_unit(v[0] for v in values))
      num_bytes.append(_unit(v[1] for v in values))
    self.flop_unit = np.array(flops)
    self.byte_unit = np.array(num_bytes)
    # One row per op: sample index, kind index, scaled FLOPs and bytes.
    rows = [(i, index[k], f, b) for i, sample_ops in enumerate(ops)
            for k, f, b in sample_ops]
    self.sample = np.array([r[0] for r in rows], np.int64)
    self.kind = np.array([r[1] for r in rows], np.int64)
    self.flops = np.array([r[2] for r in rows]) / self.flop_unit[self.kind]
    self.bytes = np.array([r[3] for r in rows]) / self.byte_unit[self.kind]
    self.misaligned = np.array([float(flag) for s in samples
                                for flag in misaligned(s, multiple)])
    self.times = np.array([s.latency_ns for s in samples], np.float64)
    self.weights = np.array([s.weight for s in samples], np.float64)
    self.time_unit = float(np.median(self.times))
    self.num_samples = len(samples)
    self.penalty_of = np.full(len(kinds), -1, np.int64)
    if multiple > 1 and misalignment != 'none':
      for i in range(len(kinds)):
        flags = self.misaligned[self.kind == i]
        if misalignment == 'shared' and flags.any():
          self.penalty_of[i] = 0
        elif flags.any() and not flags.all():  # 'kind': needs a contrast.
          self.penalty_of[i] = self.penalty_of.max() + 1
    self.num_penalties = int(self.penalty_of.max() + 1)
    self.num_rates = 3 * len(kinds)

  def columns(self):
    """[samples, 3 x kinds] sums of scaled FLOPs, bytes and op counts."""
    design = np.zeros((self.num_samples, self.num_rates))
    for part, values in enumerate((self.flops, self.bytes,
                                   np.ones_like(self.flops))):
      np.add.at(design, (self.sample, 3 * self.kind + part), values)
    return design

  def misalignment_of(self, x):
    """The misalignment factor of each kind (0 without one)."""
    penalties = np.concatenate([x[self.num_rates:], [0.0]])
    return penalties[self.penalty_of]  # -1: the trailing 0.

  def residuals_and_jacobian(self, x):
    """Relative residuals [samples] and their Jacobian [samples, x.size]."""
    rates = x[:self.num_rates]
    a, b, c = (rates[0::3][self.kind], rates[1::3][self.kind],
               rates[2::3][self.kind])
    factor = 1.0 + self.misalignment_of(x)[self.kind] * self.misaligned
    compute, memory = a * self.flops, b * self.bytes
    use_compute = compute >= memory
    rate = np.where(use_compute, compute, memory)
    per_op = factor * rate + c
    prediction = np.bincount(self.sample, per_op, self.num_samples)
    scaled_times = self.times / self.time_unit
    residuals = self.weights * (prediction / scaled_times - 1.0)
    jacobian = np.zeros((self.num_samples, x.size))
    for part, values in enumerate((
        np.where(use_compute, factor * self.flops, 0.0),
        np.where(use_compute, 0.0, factor * self.bytes),
        np.ones_like(self.flops))):
      np.add.at(jacobian, (self.sample, 3 * self.kind + part), values)
    penalized = self.penalty_of[self.kind] >= 0
    if penalized.any():
      np.add.at(jacobian, (self.sample[penalized], self.num_rates +
                           self.penalty_of[self.kind[penalized]]),
                (self.misaligned * rate)[penalized])
    return residuals, jacobian * (self.weights / scaled_times)[:, None]


def _unit(values) -> float:
  values = [v for v in values if v > 0]
  return float(np.median(values)) if values else 1.0


def _solve(design):
  """The fitted parameters (scaled units) of a _Design."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  scaled = design.columns() * (
      design.weights / (design.times / design.time_unit))[:, None]
  start, _ = optimize.nnls(scaled, design.weights)
  start = np.concatenate([np.maximum(start, 1e-6),
                          np.full(design.num_penalties, _START_MISALIGNMENT)])
  result = optimize.least_squares(
      lambda x: design.residuals_and_jacobian(x)[0], start,
      jac=lambda x: design.residuals_and_jacobian(x)[1],
      bounds=(0.0, np.inf), method='trf', x_scale='jac', xtol=1e-12,
      ftol=1e-12, gtol=1e-12, max_nfev=2000)
  x = result.x if result.cost <= 0.5 * np.sum(
      design.residuals_and_jacobian(start)[0] ** 2) else start
  # A rate whose kind never has FLOPs (or bytes) does not change any
  # prediction; report it as 0 rather than whatever the optimizer left.
  x = np.where(x < 1e-12, 0.0, x)  # Values at the bound, not denormals.
  for i in range(len(design.kinds)):
    ops = design.kind == i
    x[3 * i] *= float(np.any(design.flops[ops] > 0))
    x[3 * i + 1] *= float(np.any(design.bytes[ops] > 0))
  return x


def _kinds_of(design, x):
  """{kind: parameters} in ns units from scaled parameters."""
  scale = design.time_unit
  misalignment = design.misalignment_of(x)
  return {kind: latency_profile.KindParameters(
      float(x[3 * i] * scale / design.flop_unit[i]),
      float(x[3 * i + 1] * scale / design.byte_unit[i]),
      float(x[3 * i + 2] * scale), float(misalignment[i]))
          for i, kind in enumerate(design.kinds)}


def _held_out_error(samples, multiple, folds, misalignment='kind'):
  """The median absolute relative error of every sample predicted by a fit
  without it.

  The median, not the RMS: a kind that only a few samples run is fitted
  from fewer still when some are held out, and its held-out predictions
  can be off by orders of magnitude (seen at 500x on a calibration of
  MobileNetV2 with one repeat), which would decide an RMS alone.
  """
  folds = min(folds, len(samples))
  errors_out = []
  for fold in range(folds):
    train = [s for i, s in enumerate(samples) if i % folds != fold]
    test = [s for i, s in enumerate(samples) if i % folds == fold]
    if not train or not test:
      continue
    kinds = _check_samples(train, multiple)
    if any(k not in kinds for s in test for k, _, _ in ops_at(s, multiple)):
      continue  # A kind only the held-out samples run: nothing to test.
    design = _Design(train, kinds, multiple, misalignment)
    profile = latency_profile.LatencyProfile(
        _kinds_of(design, _solve(design)), preferred_multiple=multiple)
    errors_out += [abs(predict_sample(profile, s) / s.latency_ns - 1.0)
                   for s in test]
  return float(np.median(errors_out)) if errors_out else float('inf')


def _candidates(samples, multiples):
  """The multiples every sample has features at (1 always)."""
  out = []
  for multiple in sorted(set(int(m) for m in multiples)):
    if multiple < 1:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `multiples`. Expected integers >= 1. '
          'Received: multiples=%r' % (tuple(multiples),))
    if multiple == 1 or all(s.aligned and multiple in s.aligned
                            for s in samples):
      out.append(multiple)
  return out


def fit_profile(samples: Sequence[Sample], batch_size: int = 1,
                device: str = '', metadata: Optional[Dict] = None,
                multiples: Sequence[int] = DEFAULT_MULTIPLES,
                folds: int = _FOLDS, multiple_tolerance: float = 0.01,
                whole_model_correction: bool = True,
                misalignment: str = 'kind',
                whole_model_tolerance: float = 0.005
                ) -> latency_profile.LatencyProfile:
  """Fits per-kind (ns_per_flop, ns_per_byte, overhead_ns, misalignment).

  Args:
    samples: the measurements; every kind appearing in them is fitted.
    batch_size: the batch size they were measured at (stored).
    device: description of the machine (stored).
    metadata: stored in the profile, with the fit report added under
      'fit': relative RMS and max error and every sample's residual, and
      'alignment': the held-out error of each candidate multiple.
    multiples: the channel multiples to choose the profile's
      `preferred_multiple` among; those some sample has no features at
      (`Sample.aligned`) are skipped, 1 is always a candidate.
    folds: of the cross-validation choosing the multiple.
    multiple_tolerance: the smallest candidate whose held-out error is
      within this (absolute, 0.01: one point of relative error) of the
      least is chosen: a larger multiple rounds structures up, so it has
      to predict clearly better.
    whole_model_correction: correct the fit to the whole-model samples
      (see the module's docstring) when there are at least two, and
      choose the multiple by their held-out error when there are enough.
    whole_model_tolerance: the tolerance of `multiple_tolerance` when the
      whole models choose the multiple (0.005: half a point; their
      held-out errors are a few percent, the layers' ten or more).
    misalignment: how a width that is not a multiple costs (module
      docstring): 'kind' (a factor per kind), 'shared' (one for every
      kind) or 'none' (as the multiple above it).

  Returns:
    A LatencyProfile whose kinds carry a 'fit' entry (samples containing
    the kind and their relative RMS error).

  Raises:
    InvalidArgumentError: for no samples, a sample without ops or with a
      latency <= 0, a multiple below 1, an unknown misalignment mode.
    ProfileError: for an op of an unknown kind.
  """
  if misalignment not in MISALIGNMENT_MODES:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `misalignment`. Expected one of %s. '
        'Received: misalignment=%r' % (', '.join(MISALIGNMENT_MODES),
                                        misalignment))
  kinds = _check_samples(samples)
  candidates = _candidates(samples, multiples)
  held_out, whole_held_out, rounded_held_out, fits = {}, {}, {}, {}
  if len(candidates) > 1:
    held_out = {m: _held_out_error(samples, m, folds, misalignment)
                for m in candidates}
    if whole_model_correction and _enough_wholes(samples):
      for m in candidates:
        design = _Design(samples, _check_samples(samples, m), m,
                         misalignment)
        fits[m] = (design, _kinds_of(design, _solve(design)))
        whole_held_out[m] = _whole_model_held_out(fits[m][1], samples, m,
                                                  misalignment)
        if m > 1:
          rounded_held_out[m] = _whole_model_held_out(
              fits[m][1], samples, m, misalignment, rounded=True)
      if any(e is None for e in whole_held_out.values()):
        whole_held_out = {}
    rounded_held_out = {m: e for m, e in rounded_held_out.items()
                        if e is not None and whole_held_out}
    criterion = ({m: max(e, rounded_held_out.get(m, 0.0))
                  for m, e in whole_held_out.items()} or held_out)
    tolerance = (whole_model_tolerance if whole_held_out else
                 multiple_tolerance)
    best = min(criterion.values())
    multiple = min(m for m in candidates
                   if criterion[m] <= best + tolerance)
  else:
    multiple = candidates[0]
  kinds = _check_samples(samples, multiple)
  if multiple in fits:
    design, fitted = fits[multiple]
  else:
    design = _Design(samples, kinds, multiple, misalignment)
    fitted = _kinds_of(design, _solve(design))
  fitted, correction = _whole_model_correction(
      fitted, samples, multiple, whole_model_correction, misalignment)
  profile = latency_profile.LatencyProfile(fitted,
                                           preferred_multiple=multiple)
  residuals = np.array([predict_sample(profile, sample) / sample.latency_ns
                        - 1.0 for sample in samples])
  kinds_out = {}
  for kind, parameters in fitted.items():
    i = kinds.index(kind)
    members = sorted(set(design.sample[design.kind == i].tolist()))
    kinds_out[kind] = dict(parameters._asdict(), fit={
        'samples': len(members),
        'rms_relative_error': _rms(residuals[members])})
  report = dict(metadata or {})
  if correction is not None:
    report['whole_model_correction'] = correction
  report['fit'] = {
      'samples': design.num_samples,
      'rms_relative_error': _rms(residuals),
      'max_relative_error': float(np.max(np.abs(residuals))),
      'residuals': [
          {'label': s.label, 'measured_ns': float(s.latency_ns),
           'predicted_ns': float(s.latency_ns * (1.0 + r)),
           'relative_error': float(r)}
          for s, r in zip(samples, residuals)],
  }
  report['alignment'] = {
      'preferred_multiple': multiple, 'candidates': candidates,
      'folds': folds, 'tolerance': multiple_tolerance,
      'misalignment': misalignment,
      'misaligned_kinds': sorted(kind for kind, p in fitted.items()
                                if p.misalignment > 0),
      'held_out_median_relative_error': {str(m): e for m, e in
                                         sorted(held_out.items())},
      'whole_model_tolerance': whole_model_tolerance,
      'chosen_by': ('whole models' if whole_held_out else
                    'samples' if held_out else 'only candidate'),
      'whole_model_held_out_median_relative_error': {
          str(m): e for m, e in sorted(whole_held_out.items())},
      'rounded_held_out_median_relative_error': {
          str(m): e for m, e in sorted(rounded_held_out.items())},
      'criterion': {str(m): e for m, e in sorted(criterion.items())}
                   if len(candidates) > 1 else {}}
  return latency_profile.LatencyProfile(kinds_out, batch_size, device,
                                        report, source='fitted profile',
                                        preferred_multiple=multiple)


def _wholes_at(samples, multiple):
  """The whole-model samples a profile at `multiple` is corrected on: the
  free ones and those rounded to `multiple` (`Sample.rounded_to`).

  Whole models rounded to another multiple are structures such a profile
  never produces; they serve to choose the multiple. Fitting the
  correction's scale on them too pulled it: ResNet50 64x64 on an AMD EPYC
  (multiple 1, 33 whole models, 19 of them rounded to 4-32) had a
  whole-model rms error of 22.5% and its random structures a MAPE of
  10.5%, each predicted 5-17% too slow.
  """
  return [sample for sample in samples if sample.whole_model and
          sample.rounded_to in (1, multiple)]


def _whole_model_arrays(kinds, samples, multiple):
  """(whole-model samples, index of the anchor or None, [times],
  [predictions], [misaligned rate parts], [op counts]) of the profile of
  `kinds` at `multiple`."""
  wholes = _wholes_at(samples, multiple)
  anchors = [i for i, sample in enumerate(wholes) if sample.anchor]
  profile = latency_profile.LatencyProfile(kinds,
                                           preferred_multiple=multiple)
  times = np.array([sample.latency_ns for sample in wholes], np.float64)
  predicted = np.array([predict_sample(profile, sample) for sample in wholes])
  off = np.zeros_like(times)
  if multiple > 1:
    for i, sample in enumerate(wholes):
      for (kind, flops, num_bytes), flag in zip(
          ops_at(sample, multiple), misaligned(sample, multiple)):
        if flag:
          off[i] += profile.predict(kind, flops, num_bytes, True) - (
              profile.parameters(kind).overhead_ns)
  counts = np.array([len(ops_at(sample, multiple)) for sample in wholes],
                    np.float64)
  return (wholes, anchors[0] if anchors else None, times, predicted, off,
          counts)


def _correction_factors(times, predicted, off, counts, anchor, fit_q):
  """(s, q, g) >= 0 of t = s x (P + q x M) + g x N (M: the misaligned ops'
  rate parts), exact at `anchor` when it is not None; q = 0 unless
  `fit_q`."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  if anchor is None:
    columns = [predicted / times] + ([off / times] if fit_q else []) + [
        counts / times]
    solution, _ = optimize.nnls(np.stack(columns, axis=1),
                                np.ones_like(times))
    scale, per_op = float(solution[0]), float(solution[-1])
    extra = float(solution[1]) / scale if fit_q and scale > 0 else 0.0
    return scale, extra, per_op
  if not fit_q:
    scale, per_op = _through_anchor(times, predicted, counts, anchor)
    return scale, 0.0, per_op
  others = np.arange(times.size) != anchor

  def error(q):
    scale, per_op = _through_anchor(times, predicted + q * off, counts,
                                    anchor)
    after = scale * (predicted + q * off) + per_op * counts
    return float(np.sum((after / times - 1.0)[others] ** 2))

  grid = np.linspace(0.0, _MAX_EXTRA_MISALIGNMENT, 401)
  best = float(grid[int(np.argmin([error(q) for q in grid]))])
  step = grid[1] - grid[0]
  refined = optimize.minimize_scalar(
      error, bounds=(max(0.0, best - step), best + step), method='bounded',
      options={'xatol': 1e-6})
  q = float(refined.x) if refined.fun <= error(best) else best
  scale, per_op = _through_anchor(times, predicted + q * off, counts, anchor)
  return scale, q, per_op


def _can_fit_extra(off, anchor, multiple, misalignment):
  """Whether the whole models can tell an extra misalignment factor: some
  run misaligned ops, and enough are free (2 besides the anchor, else 3)."""
  free = off.size - (anchor is not None)
  return (multiple > 1 and misalignment != 'none' and bool(np.any(off > 0))
          and free >= (2 if anchor is not None else 3))


def _whole_model_correction(kinds, samples, multiple, enabled,
                            misalignment='kind'):
  """(kinds corrected to the whole-model samples, the report), or
  (kinds, None) when disabled or with nothing to correct to.

  Fits t = s x (P + q x M) + g x N on the whole models (P: the profile's
  prediction, M: the part of it of misaligned ops' rates, N: the number
  of ops) on relative errors, s, q, g >= 0, through the anchor when there
  is one (then one whole model suffices; else two are needed). q, the
  extra cost of a misaligned op inside a whole model, is fitted at a
  multiple above 1 with misalignment on, when the whole models run
  misaligned ops and at least two besides the anchor (three without one)
  are free; else 0. Returns the kinds with every rate and overhead times
  s, plus g on every overhead, and every misalignment factor p turned into
  (1 + p)(1 + q) - 1.
  """
  wholes = [sample for sample in samples if sample.whole_model]
  anchors = [i for i, sample in enumerate(wholes) if sample.anchor]
  if not enabled or not wholes or (not anchors and len(wholes) < 2):
    return kinds, None
  wholes, anchor, times, predicted, off, counts = _whole_model_arrays(
      kinds, samples, multiple)
  fit_q = _can_fit_extra(off, anchor, multiple, misalignment)
  scale, extra, per_op = _correction_factors(times, predicted, off, counts,
                                             anchor, fit_q)
  if scale <= 0:  # Overheads alone cannot tell structures apart.
    return kinds, None
  corrected = {kind: latency_profile.KindParameters(
      scale * p.ns_per_flop, scale * p.ns_per_byte,
      scale * p.overhead_ns + per_op,
      (1.0 + p.misalignment) * (1.0 + extra) - 1.0 if extra > 0 else
      p.misalignment)
               for kind, p in kinds.items()}
  after = scale * (predicted + extra * off) + per_op * counts
  return corrected, {
      'scale': float(scale), 'per_op_ns': float(per_op),
      'misalignment': float(extra), 'misalignment_fitted': fit_q,
      'whole_models': len(wholes),
      'anchor': wholes[anchor].label if anchor is not None else None,
      'rms_relative_error_before': _rms(predicted / times - 1.0),
      'rms_relative_error_after': _rms(after / times - 1.0)}


def _enough_wholes(samples):
  """Whether the whole models can choose the multiple: _MIN_HELD_OUT_WHOLES
  besides the anchor, or one more without one."""
  wholes = [sample for sample in samples if sample.whole_model]
  anchored = any(sample.anchor for sample in wholes)
  return len(wholes) - anchored >= _MIN_HELD_OUT_WHOLES + (not anchored)


def _whole_model_held_out(kinds, samples, multiple, misalignment,
                          rounded=False):
  """The median absolute relative error of every whole model but the
  anchor, predicted by the correction fitted without it (the per-kind fit
  `kinds` is shared); None with too few whole models (`_enough_wholes`).
  With `rounded`, the median over those rounded to `multiple` instead
  (`Sample.rounded_to`; None when there are none)."""
  wholes, anchor, times, predicted, off, counts = _whole_model_arrays(
      kinds, samples, multiple)
  free = [i for i in range(len(wholes)) if i != anchor]
  if rounded:
    free = [i for i in free if wholes[i].rounded_to == multiple]
  if not _enough_wholes(samples) or not free:
    return None
  errors_out = []
  for held in free:
    keep = np.arange(len(wholes)) != held
    train_anchor = (None if anchor is None else
                    int(np.sum(keep[:anchor])))
    fit_q = _can_fit_extra(off[keep], train_anchor, multiple, misalignment)
    scale, extra, per_op = _correction_factors(
        times[keep], predicted[keep], off[keep], counts[keep], train_anchor,
        fit_q)
    if scale <= 0:
      return None
    after = scale * (predicted[held] + extra * off[held]) + (
        per_op * counts[held])
    errors_out.append(abs(after / times[held] - 1.0))
  return float(np.median(errors_out))


def _through_anchor(times, predicted, counts, anchor):
  """(s, g) >= 0 with s x P + g x N exact at `anchor` and the least
  squared relative error elsewhere (closed form: one free parameter)."""
  t0, p0, n0 = times[anchor], predicted[anchor], counts[anchor]
  others = np.arange(times.size) != anchor
  # g = (t0 - s p0) / n0, so the others' relative error is s a + b - 1.
  a = (predicted - p0 * counts / n0)[others] / times[others]
  b = (t0 * counts / n0)[others] / times[others]
  scale = (float(np.dot(a, 1.0 - b) / np.dot(a, a)) if np.dot(a, a) > 0
           else t0 / p0)
  scale = min(max(scale, 0.0), t0 / p0)  # Both s and g >= 0.
  # At s = t0 / p0, t0 - s p0 may round to -1e-15: g is 0 there.
  return scale, max(0.0, (t0 - scale * p0) / n0)


def _rms(values) -> float:
  values = np.asarray(values, np.float64)
  return float(math.sqrt(np.mean(values ** 2))) if values.size else 0.0
