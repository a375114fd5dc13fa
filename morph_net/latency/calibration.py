"""Calibrating a LatencyProfile on this machine from a Keras model's layers.

    profile = calibration.calibrate(model, batch_size=8)
    calibration.save_profile(profile, 'device.json')
    reg = ModelRegularizer(model, GammaLatencyRegularizer,
                           gamma_threshold=1e-2, hardware='device.json',
                           batch_size=8)

Every top-level layer of the model that runs costed ops (convolutions,
dense layers, batch norm, activations, adds, padding, pooling ...; see
`latency_profile.OP_KINDS`) is rebuilt alone at several widths, and the
whole model at the same width fractions; all are traced as `tf.function`s
at the batch size and timed warm, in groups the kernel caches hold, each
group interleaved (`variants.time_variants`, `measurement.measure`).
Layers with the same class, configuration and input shapes are measured
once. `fit.fit_profile` then fits every op kind's rates and per-op
overhead to all the measurements (each the sum over the ops of its trace;
a layer's time without the call overhead, measured beside it; a whole
model's with one call's overhead, as a deployment calls it),
at the channel multiple with the least held-out error (the profile's
`preferred_multiple`), and the profile keeps the fit's residuals and how
the measurements were timed (metadata 'measurement': the group budget,
the flagged unstable variants, each one's IQR / median).

The settings of a calibration are one `CalibrationSettings`; `measure` and
`calibrate` take it (`settings=`), or its fields as keyword arguments, or
both (the keywords replace the settings' fields).
"""

import dataclasses
import time
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.latency import fit as fit_lib
from morph_net.latency import measurement
from morph_net.latency import timing
from morph_net.latency import variants as variants_lib
from morph_net.network_regularizers import latency_profile
from morph_net.structure import atomic_file
from morph_net.surgery import channel_model
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import nesting

__all__ = ['CalibrationSettings', 'model_fractions', 'measure', 'calibrate',
           'save_profile', 'summary']


@dataclasses.dataclass(frozen=True)
class CalibrationSettings:
  """How a calibration measures (the arguments of `measure`/`calibrate`).

  Attributes:
    batch_size: the inference batch size to calibrate for.
    repeats: interleaved timed rounds per group (medians are used).
    warmup: untimed calls of each variant before its group's rounds (at
      least one is made).
    fractions: width fractions each layer is measured at (see
      `variants.layer_variants`).
    layer_rules: the layer-rule table (which layers take a width).
    verbose: 1 shows progress bars (keras.utils.Progbar) while the layers
      are built and while they are timed; 0 nothing.
    statistic: 'median' (default) or 'min' of each variant's repeats; use
      the same when measuring the models the profile predicts.
    whole_model: also time the whole model rebuilt at each fraction
      (and at half the smallest with `half_smallest_fraction`;
      `model_fractions`, `variants.model_variants`), interleaved with the layers, and
      fit to those timings: a layer run alone is not exactly a layer run
      inside the network (its input cannot be reused in place, the caches
      hold other data), and these samples tie the profile to what the
      network takes.
    model_structures: with whole_model, also time this many random
      structures of the model (`variants.random_structures`, drawn
      with `seed`), so the whole-model samples vary the groups apart.
    seed: of those structures.
    whole_model_share: the part of the fit's weight (sum of squared sample
      weights) the whole-model samples carry together, in (0, 1); the
      layers carry the rest.
    clock: 'wall' (default) or 'cpu' (`timing.CLOCKS`: steadier on
      a shared machine, with one intra-op and one inter-op thread); use
      the same when measuring the models the profile predicts.
    budget: kernel weight per timed group (`measurement.measure`); None
      finds it by measuring (`probe`) or uses `measurement.default_budget`.
    probe: find the budget by measuring when none is given.
    unstable_spread: IQR / median above which a measurement is repeated.
    max_attempts: measurements of an unstable variant before it is flagged
      (metadata 'measurement', 'flagged').
    multiples: channel multiples the fit tries (`fit.fit_profile`); the
      profile's `preferred_multiple` is the one with the least held-out
      error. (1,) fits no alignment.
    misaligned: also time every layer at its original widths less one,
      the whole model one channel narrower per group and at the fractions
      rounded to multiples of 8 (`variants.layer_variants`,
      `variants.model_variants`): widths that are not multiples next to
      widths that are, for the fit's misalignment factors.
    misalignment: how the fit models a width that is not a multiple
      (`fit.fit_profile`): 'kind', 'shared' or 'none'.
    allocator: 'steady' (default) or 'default'
      (`measurement.MeasurementSettings.allocator`); use the same when
      measuring the models the profile predicts.

  Raises:
    InvalidArgumentError: for a whole_model_share outside (0, 1) or a
      misalignment not in `fit.MISALIGNMENT_MODES`.
    half_smallest_fraction: also time the whole model at half the
      smallest fraction. On an AMD EPYC it helped MobileNetV2 32x32 batch
      64 (structures at 13-20% of the FLOPs were predicted 4-10% too fast
      without it) and hurt ResNet50 64x64 batch 8 (random structures' MAPE
      7.5% without, 10.3% with: the correction's two parameters cannot fit
      both ends), so it is off by default; `latency_speedup.py` turns it
      on for its small latency targets.
  """
  batch_size: int = 1
  repeats: int = 15
  warmup: int = 2
  fractions: Sequence[float] = variants_lib.DEFAULT_FRACTIONS
  layer_rules: Optional[layer_rules_lib.LayerRules] = None
  verbose: int = 1
  statistic: str = 'median'
  whole_model: bool = True
  model_structures: int = 0
  seed: int = 1
  whole_model_share: float = 0.5
  clock: str = 'wall'
  budget: Optional[int] = None
  probe: bool = True
  unstable_spread: float = 0.1
  max_attempts: int = 3
  multiples: Sequence[int] = fit_lib.DEFAULT_MULTIPLES
  misaligned: bool = True
  misalignment: str = 'kind'
  allocator: str = 'steady'
  half_smallest_fraction: bool = False

  def measurement_settings(self) -> measurement.MeasurementSettings:
    """The `measurement.MeasurementSettings` of these settings."""
    return measurement.MeasurementSettings(
        repeats=self.repeats, warmup=self.warmup, statistic=self.statistic,
        clock=self.clock, budget=self.budget, probe=self.probe,
        unstable_spread=self.unstable_spread,
        max_attempts=self.max_attempts, allocator=self.allocator)

  def __post_init__(self):
    if not 0.0 < self.whole_model_share < 1.0:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `whole_model_share`. Expected a '
          'number in (0, 1). Received: whole_model_share=%r' %
          (self.whole_model_share,))
    if self.misalignment not in fit_lib.MISALIGNMENT_MODES:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `misalignment`. Expected one of %s. '
          'Received: misalignment=%r' % (
              ', '.join(fit_lib.MISALIGNMENT_MODES), self.misalignment))


def _settings_of(function: str, batch_size: Optional[int],
                 settings: Optional[CalibrationSettings],
                 options: Dict) -> CalibrationSettings:
  """`settings` (or the defaults) with batch_size and `options` replaced.

  Raises:
    InvalidArgumentTypeError: for settings that are not CalibrationSettings
      (e.g. a third positional argument) or an unknown keyword.
  """
  if settings is None:
    settings = CalibrationSettings()
  elif not isinstance(settings, CalibrationSettings):
    raise errors.InvalidArgumentTypeError(
        'Invalid value for argument `settings` of %s. Expected a '
        'CalibrationSettings; pass the other settings as keyword arguments '
        '(repeats=..., warmup=...). Received: %r (%s)' % (
            function, settings, type(settings).__name__))
  fields = [f.name for f in dataclasses.fields(CalibrationSettings)]
  unknown = sorted(set(options) - set(fields))
  if unknown:
    raise errors.InvalidArgumentTypeError(
        '%s got unknown keyword arguments %s. Expected the fields of '
        'CalibrationSettings: %s.' % (function, ', '.join(unknown),
                                      ', '.join(fields)))
  if batch_size is not None:
    options = dict(options, batch_size=batch_size)
  return dataclasses.replace(settings, **options) if options else settings


def model_fractions(fractions: Sequence[float], half_smallest: bool = True
                    ) -> Tuple[float, ...]:
  """The width fractions the whole model is timed at: `fractions` and half
  the smallest of them.

  A latency target reaches structures smaller than the layers' smallest
  fraction, and the whole-model correction (`fit`) must see some: on an
  AMD EPYC (MobileNetV2 at 32x32, batch 64, one thread) the smallest whole
  models timed at the fractions (1, 0.6, 0.3) ran 6.8-8.4 ms, and a
  profile fitted on them predicted structures of 6.2-6.6 ms (13-20% of
  the FLOPs, at 0.6 of the original's latency) 4-10% too fast.
  """
  smallest = min(fractions)
  return tuple(fractions) + ((smallest / 2.0,) if half_smallest and
                             smallest > 0 else ())


def measure(model, batch_size: Optional[int] = None,
            settings: Optional[CalibrationSettings] = None,
            **options) -> Tuple[List[fit_lib.Sample], Dict]:
  """Times the model's layers (and the whole model) on this machine.

  The measuring half of `calibrate` (arguments there): the samples it fits,
  to keep and refit (`fit.fit_profile`) without timing again.

  Returns:
    (samples, metadata): the measurements above the call overhead (a
    layer's without it, a whole model's with one call's), each with its
    ops and weight, and the settings (metadata of `calibrate`,
    with 'left_out' listing the measurements at or below the overhead).

  Raises:
    InvalidArgumentError: for a model without static input shapes or with
      no costed layer, or a share outside (0, 1) (as `calibrate`).
    InvalidArgumentTypeError: for settings that are not a
      CalibrationSettings or an unknown keyword argument.
    UnsupportedModelError: for subclassed models.
  """
  s = _settings_of('measure', batch_size, settings, options)
  start = time.time()
  if (nesting.is_graph_model(model) and
      not isinstance(model, keras.Sequential) and
      nesting.has_nested_models(model)):
    # The layers of nested models (e.g. a keras.applications base under a
    # head) are timed like the others: the same layers, called flat.
    model = nesting.flatten_nested(model)
  groups = variants_lib.layer_variants(model, s.batch_size, s.fractions,
                                       s.layer_rules, s.verbose,
                                       misaligned=s.misaligned)
  if not groups:
    raise errors.InvalidArgumentError(
        'Model %r has no layer that runs a costed op (%s), so there is '
        'nothing to calibrate.' % (model.name,
                                   ', '.join(latency_profile.OP_KINDS)))
  variants = [v for group in groups for v in group]
  wholes = []
  if s.whole_model:
    structures = variants_lib.random_structures(
        channel_model.analyze(model, s.layer_rules), s.model_structures,
        np.random.RandomState(s.seed))
    wholes = variants_lib.model_variants(model, s.batch_size,
                                         model_fractions(
                                             s.fractions,
                                             s.half_smallest_fraction),
                                         s.layer_rules, structures,
                                         misaligned=s.misaligned)
  times, overheads, report = variants_lib.time_variants(
      variants + wholes, s.measurement_settings(), verbose=s.verbose)
  call_overhead = float(np.median(overheads))  # Over the variants.
  # The whole-model samples together weigh whole_model_share of the sum of
  # squared weights.
  weight = np.sqrt(s.whole_model_share / (1.0 - s.whole_model_share) *
                   len(variants) / float(max(len(wholes), 1)))
  samples, dropped = [], []
  for variant, latency, overhead in zip(variants + wholes, times, overheads):
    if variant.layer is None:
      # A whole model is what a deployment calls: its latency includes one
      # call's overhead (a layer's rates must not, it is one op of many).
      latency += overhead
    sample = fit_lib.Sample(variant.ops, latency, variant.label,
                            1.0 if variant.layer is not None else weight,
                            variant.aligned,
                            whole_model=variant.layer is None,
                            anchor=variant.model is model,
                            rounded_to=variant.rounded_to)
    (samples if latency > 0 else dropped).append(sample)
  if dropped:
    logging.warning('%d measurements at or below the call overhead were '
                    'left out of the fit: %s', len(dropped),
                    ', '.join(sample.label for sample in dropped))
  metadata = {
      'model': model.name, 'threads': timing.thread_settings(),
      'repeats': s.repeats, 'warmup': s.warmup,
      'fractions': list(s.fractions),
      'model_fractions': list(model_fractions(s.fractions,
                                              s.half_smallest_fraction))
                         if s.whole_model else [],
      'statistic': s.statistic, 'clock': s.clock,
      'layers': len(groups), 'call_overhead_ns': call_overhead,
      'whole_model_samples': len(wholes),
      'model_structures': s.model_structures if s.whole_model else 0,
      'structure_seed': s.seed, 'whole_model_share': s.whole_model_share,
      'misaligned_variants': s.misaligned,
      'left_out': [sample.label for sample in dropped],
      'measurement': {
          'budget': report.budget, 'budget_source': report.budget_source,
          'groups': len(report.groups), 'probe': report.probe,
          'flagged': report.flagged(), 'environment': report.environment,
          'spread': {m.label: m.spread for m in report.measurements}},
      'tensorflow': tf.__version__, 'keras': keras.__version__,
      'seconds': time.time() - start,
  }
  return samples, metadata


def calibrate(model, batch_size: Optional[int] = None,
              settings: Optional[CalibrationSettings] = None,
              **options) -> latency_profile.LatencyProfile:
  """Measures the model's layers on this machine and fits a profile.

  Pin threads first (`timing.pin_threads`) to calibrate for a
  given thread count; the profile records the settings it ran with.

      calibrate(model, 8, repeats=5)
      calibrate(model, settings=CalibrationSettings(batch_size=8, repeats=5))

  Args:
    model: a built functional or Sequential Keras model with a static input
      shape (the model the profile will cost, or one with the same layer
      kinds and sizes).
    batch_size: the inference batch size to calibrate for (replaces the
      settings' batch_size; default 1).
    settings: the calibration settings (default: `CalibrationSettings()`).
    **options: fields of `CalibrationSettings` (repeats, warmup,
      fractions, layer_rules, verbose, statistic, whole_model,
      model_structures, seed, whole_model_share, clock, budget, probe,
      unstable_spread, max_attempts, multiples, misaligned, misalignment,
      allocator),
      replacing the settings' values.

  Returns:
    The fitted LatencyProfile; its metadata holds the settings, the call
    overhead, the seconds taken and the fit report (every measurement
    with its prediction).

  Raises:
    InvalidArgumentError: for a model without static input shapes or with
      no costed layer, or a share outside (0, 1).
    InvalidArgumentTypeError: for settings that are not a
      CalibrationSettings or an unknown keyword argument.
    UnsupportedModelError: for subclassed models.
  """
  start = time.time()
  settings = _settings_of('calibrate', batch_size, settings, options)
  samples, metadata = measure(model, settings=settings)
  profile = fit_lib.fit_profile(samples, settings.batch_size,
                                timing.describe_device(), metadata,
                                multiples=settings.multiples,
                                misalignment=settings.misalignment)
  profile.metadata['seconds'] = time.time() - start
  return profile


def save_profile(profile: latency_profile.LatencyProfile, path: str) -> str:
  """Writes the profile JSON atomically (sorted keys, indent 2)."""
  atomic_file.write_text_atomically(profile.to_json(), path)
  return path


def summary(profile: latency_profile.LatencyProfile) -> str:
  """A table of the kinds' parameters and fit errors, one line each."""
  lines = ['%-14s %12s %12s %12s %9s %8s %10s' % (
      'kind', 'ns/FLOP', 'ns/byte', 'overhead ns', 'misalign', 'samples',
      'rms err')]
  for kind, p in sorted(profile.kinds.items()):
    fit = profile.fit(kind) or {}
    lines.append('%-14s %12.4g %12.4g %12.1f %8.1f%% %8s %9.1f%%' % (
        kind, p.ns_per_flop, p.ns_per_byte, p.overhead_ns,
        100.0 * p.misalignment,
        fit.get('samples', '-'),
        100.0 * fit.get('rms_relative_error', float('nan'))))
  report = profile.metadata.get('fit', {})
  if report:
    lines.append('%d measurements, relative error rms %.1f%%, max %.1f%%' % (
        report['samples'], 100.0 * report['rms_relative_error'],
        100.0 * report['max_relative_error']))
  alignment = profile.metadata.get('alignment', {})
  held_out = alignment.get('held_out_median_relative_error')
  lines.append('preferred channel multiple %d%s' % (
      profile.preferred_multiple, '' if not held_out else
      ' (held-out median error %s)' % ', '.join(
          '%s: %.1f%%' % (m, 100.0 * e) for m, e in sorted(
              held_out.items(), key=lambda item: int(item[0])))))
  wholes = alignment.get('whole_model_held_out_median_relative_error')
  if wholes:
    lines.append('  chosen by the whole models\' held-out median error %s' %
                 ', '.join('%s: %.1f%%' % (m, 100.0 * e) for m, e in sorted(
                     wholes.items(), key=lambda item: int(item[0]))))
  rounded = alignment.get('rounded_held_out_median_relative_error')
  if rounded:
    lines.append('  and of those rounded to each multiple %s' %
                 ', '.join('%s: %.1f%%' % (m, 100.0 * e) for m, e in sorted(
                     rounded.items(), key=lambda item: int(item[0]))))
  correction = profile.metadata.get('whole_model_correction')
  if correction:
    lines.append('whole-model correction: scale %.3f, %.0f ns per op, extra '
                 'misalignment %.1f%%; rms error %.1f%% -> %.1f%%' % (
                     correction['scale'], correction['per_op_ns'],
                     100.0 * correction.get('misalignment', 0.0),
                     100.0 * correction['rms_relative_error_before'],
                     100.0 * correction['rms_relative_error_after']))
  timed = profile.metadata.get('measurement')
  if timed:
    lines.append('timed in %d groups (kernel budget %d, %s); unstable: %s' % (
        timed['groups'], timed['budget'], timed['budget_source'],
        ', '.join(timed['flagged']) or 'none'))
  return '\n'.join(lines)
