"""What latency calibration times: Keras layers alone, and the whole model.

A `Variant` is a small program calibration times: one layer of the model
rebuilt alone at some widths (`layer_variants`) -- its input and, for layers
that take a width, its output scaled by the fractions given -- in a one-layer
functional model, or the whole model rebuilt with every changeable width
scaled (`model_variants`). Each is traced as a `tf.function` at the batch
size, as the rebuilt model runs it, and carries the (kind, FLOPs, bytes) of
the costed ops its trace runs (`profile_resource.op_features`).

With `misaligned`, both also run at widths that are not multiples next to
widths that are: every layer also at its original widths less one, the whole
model one channel narrower per changeable group, at each fraction rounded
to each of `ALIGNED_MULTIPLES`, and each random structure rounded up to one
of them in turn, so that the fit can tell the extra cost of a misaligned
width from that of its FLOPs (`morph_net.latency.fit`, misalignment) and
the whole models can tell which multiple the hardware runs fast: a
structure a profile at multiple m makes has widths that are multiples of m
and mostly not of 2m, so the profile must predict those (on an AMD EPYC,
MobileNetV2 at 32x32, batch 64, structures with widths that are multiples
of 4 ran 9-10% slower than the same rounded up to multiples of 8, although
the latter had 1.4-2.3 times the FLOPs; calibrated with only multiples of 8
among its rounded whole models, the profile chose 4 and predicted them
14-16% too fast).

`time_variants` times them warm (`measurement.measure`): in groups small
enough for the kernel caches, each group's members interleaved, one call
of each per round, so the load of a shared machine varies alike for them;
small layers run several times per call (`copies_of`), and an identity
function with the same inputs and outputs, timed in every group, gives
each call's overhead, which is subtracted.
"""

import collections
import json
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from morph_net import errors
from morph_net.latency import measurement
from morph_net.network_regularizers import latency_profile
from morph_net.network_regularizers import profile_resource
from morph_net.structure import width_multiplier
from morph_net.surgery import channel_model
from morph_net.surgery import layer_rules as layer_rules_lib
from morph_net.surgery import rebuild

__all__ = ['DEFAULT_FRACTIONS', 'ALIGNED_MULTIPLE', 'ALIGNED_MULTIPLES',
           'TARGET_BYTES',
           'MAX_COPIES', 'Variant', 'progress_bar', 'width_pairs',
           'layer_variants', 'random_structures',
           'model_variants', 'copies_of', 'time_variants',
           'measure_variants']

# Width fractions every layer is measured at.
DEFAULT_FRACTIONS = (1.0, 0.6, 0.3)
# The multiple the aligned whole-model variants rounded to before they
# rounded to each of ALIGNED_MULTIPLES (kept for its users).
ALIGNED_MULTIPLE = 8
# The multiples the rounded whole-model variants round to
# (`model_variants`): every candidate multiple of a profile above 1.
ALIGNED_MULTIPLES = tuple(m for m in latency_profile.CANDIDATE_MULTIPLES
                          if m > 1)
# Bytes one timed call should move, and the most runs of a layer per call
# (see `copies_of`).
TARGET_BYTES = 4e6
MAX_COPIES = 16

# A layer (or the whole model) rebuilt at some widths: its model, the input
# shapes (with batch), a label, the original layer's name (None for the
# whole model), the traced forward pass (a concrete function of the inputs)
# and the (kind, FLOPs, bytes) of every costed op it runs; `aligned` the
# same at channel counts rounded up to each of the profile's candidate
# multiples ({multiple: ops}, `latency_profile.CANDIDATE_MULTIPLES`);
# `rounded_to` the multiple a whole model's changeable widths were rounded
# to on purpose (1: not rounded).
Variant = collections.namedtuple(
    'Variant', ['model', 'input_shapes', 'label', 'layer', 'function', 'ops',
                'aligned', 'rounded_to'], defaults=(None, 1))


def progress_bar(target: int, verbose: int, unit_name: str):
  """A keras.utils.Progbar; plain lines when stdout is not a terminal.

  Keras redraws a verbose=1 bar with ANSI escape codes and backspaces even
  into a file or a pipe; there verbose 1 becomes 2 (one plain line when the
  bar ends).

  Args:
    target: the number of steps.
    verbose: 0 (nothing), 1 (a bar) or 2 (one line at the end).
    unit_name: what a step is ('layer', 'round').

  Returns:
    The Progbar.
  """
  if verbose == 1 and not (hasattr(sys.stdout, 'isatty') and
                           sys.stdout.isatty()):
    verbose = 2
  return keras.utils.Progbar(target, verbose=verbose, unit_name=unit_name)


def width_pairs(fractions: Sequence[float]) -> List[Tuple[float, float]]:
  """(input, output) fractions of a layer that takes a width.

  Both sides at each fraction, plus the widest input with the narrowest
  output and the reverse, so the fit sees inputs and outputs vary apart.
  """
  widest, narrowest = max(fractions), min(fractions)
  pairs = [(f, f) for f in fractions]
  for pair in ((widest, narrowest), (narrowest, widest)):
    if pair not in pairs:
      pairs.append(pair)
  return pairs


def _scaled(width: int, fraction: float) -> int:
  return max(1, int(round(width * fraction)))


def _signature(layer, input_shapes) -> str:
  config = dict(layer.get_config())
  config.pop('name', None)
  return json.dumps([type(layer).__name__, config, input_shapes],
                    sort_keys=True, default=str)


def _layer_model(layer, input_shapes, width_attribute, out_width):
  """A one-layer model of `layer`'s class at the given widths."""
  config = dict(layer.get_config())
  config['name'] = layer.name
  if width_attribute is not None:
    config[width_attribute] = out_width
  clone = type(layer).from_config(config)
  inputs = [keras.Input(batch_shape=shape) for shape in input_shapes]
  return keras.Model(inputs, clone(inputs if len(inputs) > 1 else inputs[0]))


def _traced_variant(model, input_shapes, label, layer, batch_size):
  """The Variant of `model`: its forward pass traced, its costed ops."""
  multi = len(input_shapes) > 1
  function = tf.function(lambda *xs: model(list(xs) if multi else xs[0],
                                           training=False))
  concrete = function.get_concrete_function(
      *[tf.TensorSpec(s, tf.float32) for s in input_shapes])
  costed = [op for op in concrete.graph.get_operations()
            if latency_profile.op_kind(op.type)]
  aligned = {m: [profile_resource.op_features(op, batch_size, m)
                 for op in costed]
             for m in latency_profile.CANDIDATE_MULTIPLES}
  return Variant(model, input_shapes, label, layer, concrete, aligned[1],
                 aligned)


def layer_variants(model, batch_size: int = 1,
                   fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   layer_rules: Optional[layer_rules_lib.LayerRules] = None,
                   verbose: int = 0, misaligned: bool = False
                   ) -> List[List[Variant]]:
  """The one-layer models to time, grouped by distinct layer.

  Args:
    model: a built functional or Sequential Keras model with static input
      shapes.
    batch_size: the batch dimension of every input.
    fractions: width fractions: of the input of layers without a width
      attribute, of input and output (`width_pairs`) of layers with one
      ('filters', 'units').
    layer_rules: the layer-rule table (which layers take a width).
    verbose: 1 shows a progress bar over the model's layers.
    misaligned: also time every layer at its original widths less one
      (input, and output for a layer with a width; labelled as the others,
      e.g. 'stem [2]->31'), where those differ and are not timed already:
      most original widths are multiples of 8 and these are not.

  Returns:
    For each distinct layer (class, config and input shapes) whose trace
    runs costed ops, its variants; the first is at the original widths.
    Layers that run no costed op are left out; a layer that cannot be
    rebuilt at other widths keeps the variants that could, with a warning.

  Raises:
    InvalidArgumentError: for a layer input of unknown size.
    UnsupportedModelError: for subclassed models.
  """
  channels = channel_model.analyze(model, layer_rules)
  seen, groups = set(), []
  progress = progress_bar(len(channels.nodes), verbose, 'layer')
  for index, (layer, inputs, _) in enumerate(channels.nodes):
    progress.update(index + 1)
    if isinstance(layer, keras.Model):
      logging.warning('Latency calibration skips nested model %r: calibrate '
                      'it as a model of its own.', layer.name)
      continue
    shapes = [(batch_size,) + tuple(t.shape[1:]) for t in inputs]
    if any(d is None for s in shapes for d in s):
      raise errors.InvalidArgumentError(
          'Layer %r (%s) has an input of unknown size %s: latency '
          'calibration needs a model with a static input shape.' % (
              layer.name, type(layer).__name__, shapes))
    key = _signature(layer, shapes)
    if key in seen:
      continue
    seen.add(key)
    attribute = channels.rule(layer).width_attribute
    pairs = (width_pairs(fractions) if attribute else
             [(f, None) for f in fractions])
    widths = []
    for in_fraction, out_fraction in pairs:
      widths.append(([_scaled(s[-1], in_fraction) for s in shapes],
                     _scaled(layer.get_config()[attribute], out_fraction)
                     if attribute else None))
    if misaligned:
      narrower = ([max(1, s[-1] - 1) for s in shapes],
                  max(1, layer.get_config()[attribute] - 1) if attribute
                  else None)
      if narrower not in widths:
        widths.append(narrower)
    variants = []
    for in_widths, out_width in widths:
      new_shapes = [s[:-1] + (w,) for s, w in zip(shapes, in_widths)]
      label = '%s %s->%s' % (layer.name, [s[-1] for s in new_shapes],
                             out_width or new_shapes[0][-1])
      try:
        variants.append(_traced_variant(
            _layer_model(layer, new_shapes, attribute, out_width),
            new_shapes, label, layer.name, batch_size))
      except (ValueError, TypeError) as e:
        logging.warning('Latency calibration cannot rebuild layer %r (%s) '
                        'at %s: %s', layer.name, type(layer).__name__,
                        label, e)
    if variants and variants[0].ops:
      groups.append(variants)
  return groups


def random_structures(channels, count: int, rng,
                      levels: Tuple[float, float] = (0.25, 1.0),
                      spread: float = 0.25) -> List[Dict[str, int]]:
  """Random structures of the model's changeable channel groups.

  Every changeable group keeps a fraction s x u of its width, s ~ U(levels)
  per structure and u ~ U(1 - spread, 1 + spread) per group, capped at 1
  (at least one channel).

  Args:
    channels: the model's `channel_model.analyze` result.
    count: how many structures.
    rng: a numpy RandomState.
    levels: the range of the per-structure level s.
    spread: the half-width of the per-group factor u.

  Returns:
    `count` structures {layer name: width}, the groups in the model's order.
  """
  groups = [g for g in channels.groups() if channels.can_change_width(g[0])[0]]
  structures = []
  for _ in range(count):
    level = rng.uniform(*levels)
    structure = {}
    for group in groups:
      fraction = min(1.0, level * rng.uniform(1.0 - spread, 1.0 + spread))
      width = max(1, int(round(channels.original_width(group[0]) * fraction)))
      structure.update({name: width for name in group})
    structures.append(structure)
  return structures


def model_variants(model, batch_size: int = 1,
                   fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   layer_rules: Optional[layer_rules_lib.LayerRules] = None,
                   structures: Sequence[Dict[str, int]] = (),
                   misaligned: bool = False) -> List[Variant]:
  """The whole model rebuilt at each width fraction and structure, as Variants.

  Every width that may change is scaled by the fraction
  (`width_multiplier.multiply`) and the model rebuilt (`rebuild`); the
  fraction 1 is the model itself. Each of `structures` ({layer name:
  width}, e.g. `random_structures`) is rebuilt too, labelled '<model> s<i>'.
  A model that cannot be rebuilt keeps the ones that could be, with a
  warning.

  With `misaligned`, also the model with every changeable width one
  narrower ('<model> x1.00 -1'; most original widths are multiples of 8,
  these are not); at each fraction below 1 with the widths rounded to each
  of ALIGNED_MULTIPLES ('<model> x0.60 /8') where that differs from the
  plain fraction (whose widths mostly are not multiples), from the
  original and from the fraction's other roundings; and each structure
  rounded up to ALIGNED_MULTIPLES[i % 4] in turn, capped at the original
  widths ('<model> s1 /8'), where that differs from it. Their
  `rounded_to` is the multiple (the fit's whole-model held-out error
  checks each candidate multiple on them).

  Returns:
    One Variant per fraction, then the misaligned and rounded ones, then
    one per structure, then the rounded structures (their `layer` is None).
  """
  channels = channel_model.analyze(model, layer_rules)
  original = channels.original_structure()
  shapes = [(batch_size,) + tuple(t.shape[1:]) for t in model.inputs]
  todo = [('%s x%.2f' % (model.name, f), f, None, 1) for f in fractions]
  if misaligned:
    todo.append(('%s x1.00 -1' % model.name, None,
                 {name: max(1, width - 1) for name, width in original.items()},
                 1))
    for fraction in fractions:
      if fraction == 1:
        continue
      seen = [original, width_multiplier.multiply(original, fraction)]
      for multiple in ALIGNED_MULTIPLES:
        aligned = {name: min(width, original[name]) for name, width in
                   width_multiplier.multiply(original, fraction,
                                             multiple).items()}
        if aligned not in seen:
          seen.append(aligned)
          todo.append(('%s x%.2f /%d' % (model.name, fraction, multiple),
                       None, aligned, multiple))
  todo += [('%s s%d' % (model.name, i), None, s, 1)
           for i, s in enumerate(structures)]
  if misaligned:
    for i, structure in enumerate(structures):
      multiple = ALIGNED_MULTIPLES[i % len(ALIGNED_MULTIPLES)]
      rounded = width_multiplier.round_up(structure, multiple, original)
      if rounded != structure:
        todo.append(('%s s%d /%d' % (model.name, i, multiple), None, rounded,
                     multiple))
  variants = []
  for label, fraction, structure, rounded_to in todo:
    try:
      if fraction == 1:
        rebuilt = model
      else:
        rebuilt = rebuild.rebuild(
            model, structure if structure is not None else
            width_multiplier.multiply(original, fraction), channels=channels)
    except errors.Error as e:
      logging.warning('Latency calibration cannot rebuild model %r (%s): %s',
                      model.name, label, e)
      continue
    variants.append(_traced_variant(rebuilt, shapes, label, None,
                                    batch_size)._replace(
                                        rounded_to=rounded_to))
  return variants


def copies_of(variant: Variant) -> int:
  """How many times one timed call runs the variant's layer.

  Small layers run several times per call (on distinct inputs, one after
  another), so that the call overhead -- a few hundred microseconds here,
  more than many layers take -- is a small part of what is timed: about
  TARGET_BYTES moved per call, at most MAX_COPIES runs.
  """
  moved = sum(num_bytes for _, _, num_bytes in variant.ops)
  return int(min(MAX_COPIES, max(1, round(TARGET_BYTES / max(moved, 1.0)))))


def _copies_function(variant, copies):
  """A concrete function running the variant's model on `copies` inputs."""
  arity, model = len(variant.input_shapes), variant.model

  def forward(*xs):
    return [model(list(xs[i * arity:(i + 1) * arity]) if arity > 1 else
                  xs[i], training=False) for i in range(copies)]

  specs = [tf.TensorSpec(s, tf.float32) for s in variant.input_shapes]
  return tf.function(forward).get_concrete_function(*(specs * copies))


def _identity_function(specs, arity, copies):
  """Takes the same inputs and returns as many outputs, doing nothing."""
  return tf.function(lambda *xs: [tf.identity(xs[i * arity])
                                  for i in range(copies)]
                     ).get_concrete_function(*specs)


def time_variants(variants: Sequence[Variant],
                  settings: Optional[measurement.MeasurementSettings] = None,
                  seed: int = 0, verbose: int = 0
                  ) -> Tuple[List[float], List[float],
                             measurement.MeasurementReport]:
  """Times every variant warm, in cache-sized groups, with its overhead.

  Each timed call runs a variant's layer `copies_of(variant)` times; an
  identity function with the same inputs and outputs gives that call's
  overhead. The variants are timed by `measurement.measure`, in groups of
  `measurement.kernel_weight` within its budget; the identities are timed
  in every group (shared), and each variant's overhead is the one
  measured in its own group.

  Args:
    variants: the variants to time.
    settings: how to time (`measurement.MeasurementSettings`).
    seed: of the random inputs.
    verbose: 1 shows a progress bar over the timed rounds.

  Returns:
    ([ns of one run of each variant's layer: (call - overhead) / copies],
    [the call overhead subtracted from each, ns], the MeasurementReport).
  """
  settings = settings or measurement.MeasurementSettings()
  rng = np.random.RandomState(seed)
  calls, keys, identities = [], [], {}
  for variant in variants:
    copies = copies_of(variant)
    xs = [tf.constant(rng.standard_normal(s).astype(np.float32))
          for _ in range(copies) for s in variant.input_shapes]
    function = _copies_function(variant, copies)
    calls.append(lambda f=function, xs=xs: f(*xs))
    key = (len(variant.input_shapes), copies)
    keys.append(key)
    if key not in identities:
      specs = [tf.TensorSpec(x.shape, x.dtype) for x in xs]
      identities[key] = (_identity_function(specs, *key), xs)
  order = sorted(identities)
  shared = [lambda f=identities[k][0], xs=identities[k][1]: f(*xs)
            for k in order]
  groups = measurement.group_by_budget(
      [measurement.kernel_weight(v.ops) for v in variants],
      settings.budget or measurement.default_budget())
  progress = progress_bar(len(groups) * settings.repeats, verbose, 'round')
  report = measurement.measure(
      calls, [v.label for v in variants],
      [measurement.kernel_weight(v.ops) for v in variants], settings,
      shared=shared, shared_labels=['overhead %d x %d' % k for k in order],
      on_round=lambda r: progress.update(min(r + 1, progress.target)))
  position = {k: i for i, k in enumerate(order)}
  overheads = [report.shared[m.group][position[k]].value_ns
               for m, k in zip(report.measurements, keys)]
  times = [float(m.value_ns - o) / k[1] for m, o, k in
           zip(report.measurements, overheads, keys)]
  return times, overheads, report


def measure_variants(variants: Sequence[Variant], repeats: int, warmup: int,
                     seed: int = 0, verbose: int = 0,
                     statistic: str = 'median', clock: str = 'wall'
                     ) -> Tuple[List[float], Dict[Tuple[int, int], float]]:
  """Times every variant and the call overhead (`time_variants`).

  Kept for its callers: `time_variants` with `repeats`, `warmup`,
  `statistic` and `clock` and the other settings at their defaults (the
  group budget found by measuring).

  Returns:
    ([ns of one run of each variant's layer: (call - overhead) / copies],
    {(inputs per run, copies): call overhead ns, the median over the
    groups}).
  """
  settings = measurement.MeasurementSettings(
      repeats=repeats, warmup=warmup, statistic=statistic, clock=clock)
  times, _, report = time_variants(variants, settings, seed, verbose)
  overhead = collections.defaultdict(list)
  for group in report.shared:
    for m in group:
      arity, copies = m.label.split()[1::2]
      overhead[(int(arity), int(copies))].append(m.value_ns)
  return times, {k: float(np.median(v)) for k, v in overhead.items()}
