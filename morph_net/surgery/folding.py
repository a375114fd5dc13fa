"""Constant folding: the rebuilt model computes what the regularized one did.

A channel the regularizer calls dead is not zero in the trained model: its
batch-norm gamma is below the alive threshold, but its beta is not, so
after the batch norm (and the activation) it outputs a constant, which the
next channel-mixing layer sees. Rebuild removes the channel; folding moves
its constant into the layers that consumed it.

One mechanism for every layer kind:

1. A *probe* is a copy of the model (its flat functional view; the user's
   model is only read) in which every removed channel is exactly constant,
   as the regularizer calls it dead: the removed output columns of the
   width-taking layers' kernels are 0 (their biases stay), and so are the
   batch-norm gammas of removed channels, but where a batch norm's input
   channel is constant in the model already (it maps that constant as the
   model does): read from a filter that is zero in the model, or, for a
   batch norm not right after a width-taking layer (after another batch
   norm, an activation, a concatenation or a sum), found constant by a run
   of the model; through `LayerRule.constant_channels`.
2. The probe and the rebuilt model run on two inputs (zeros and a fixed
   random sample, batch 2). For every *affine* layer L of the rebuilt
   model (conv, dense, transposed and separable convs, depthwise convs;
   `LayerRule.affine`), in run order,
   `delta = A(x_probe) - A(embed(x_new))`, where A is L's affine part (L
   without its activation, original weights), x_probe its input in the
   probe, x_new its input in the rebuilt model (after the folds before
   it), placed at the surviving channel indices with zeros elsewhere
   (`RebuildPlan.indices`, which knows groups, concat slices, Flatten).
   delta read at the centre position of the first input is a constant per
   output channel: the removed channels' contribution, and that of vanished
   branches (a dead residual branch's beta added to its skip). (Integer
   inputs, token ids, get random ids below the smallest Embedding
   vocabulary.) A delta that does not bring L's outputs on the random
   input closer on average is not folded: it is no constant but a
   difference varying with the input (after a layer normalization that
   lost channels, see `builtin_rules.ChannelNormRule`).
3. delta goes into L's bias if it has one, else into the moving mean of a
   BatchNormalization that alone consumes L's output (mean -= delta), else
   a warning names L (its constant is lost).

Recurrent layers (SimpleRNN, GRU, LSTM and Bidirectional wrappers of them,
`builtin_rules.RecurrentRule`) mix channels through their recurrence, but
each direction reads its input only through its `kernel` and adds its
input bias before any nonlinearity: delta is computed as above on that
input kernel (per direction, on the gate columns of the surviving units)
and goes into the input bias (the first row of a GRU's bias with
reset_after), which is exact whatever the gates, merge mode or direction
of the steps; a recurrent layer without biases loses it (warned).

Where it is exact: delta is the same at every position and for every
input when the constants reach L unchanged over positions. That holds for
dense layers, 1x1 and 'valid' convolutions, and constants passing only
per-channel affine layers. It does not hold at the borders of a 'same'
(zero-padded) convolution with a kernel larger than 1, whose border
positions see part of the constant (and later layers carry that border
difference inward, so on small feature maps "border" can be most of the
map); for a transposed convolution whose stride does not divide its
kernel; or when a vanished branch's constant passes a nonlinearity
together with live channels (a dead residual branch before the ReLU after
the Add). Folding measures this (delta over all positions and both
inputs) and logs the layers once, with the largest deviation. Layers that
are neither affine nor channelwise (`LayerRule.channelwise`: layer norm
over channels, softmax, attention, recurrent layers with other cells or
called with initial states, unknown layers) cannot take a constant, and
their outputs change with the number of channels: when one loses input
channels or sees shifted values, a warning names it.

Folding is exact only for removed channels that are constant in the model
(the probe computes the model's outputs). When the model's outputs differ
from the probe's, a warning names the layers whose inputs differ: removed
channels the regularizer did not find dead reach them (a layer without
batch norm summed with or the maximum of a dead channel under a Gamma
regularizer, whose group dies by the batch norm alone; a gamma not at 0;
widths chosen below the alive counts).
"""

from typing import Dict, List, Optional, Tuple

from absl import logging
import keras
import numpy as np

from morph_net.surgery import builtin_rules
from morph_net.surgery import layer_rule
from morph_net.surgery import nesting
from morph_net.surgery import plan as plan_lib

__all__ = ['fold_constants', 'probe_model']

_RELATIVE_TOLERANCE = 1e-4
# A channel changing less than this (relative) from one input to another is
# constant (float32 rounding of one value computed twice).
_CONSTANT_TOLERANCE = 1e-6
_SPATIAL_DEFAULT = 32  # Size of an unknown spatial input dimension.


def _removed(plan, space, kept) -> np.ndarray:
  size = plan.channels.space_size(space)
  return np.setdiff1d(np.arange(size), plan.indices(space, kept))


def probe_model(plan: plan_lib.RebuildPlan, kept: Dict[int, np.ndarray]):
  """A copy of the model whose removed channels are exactly constant.

  Args:
    plan: the rebuild plan.
    kept: {group root: surviving channel indices}.

  Returns:
    A functional model (a clone of the channel model's flat view, with the
    same layer names) whose width-taking layers have zero kernel columns
    on the removed channels, and whose batch norms have gamma 0 there
    unless their input is constant there already in the model (see
    `_constant_inputs`).
  """
  ch = plan.channels
  probe = keras.models.clone_model(ch.functional)
  silenced = {}  # name -> (layer of the model, its weights, removed)
  undecided = []  # names whose constant inputs only a run of the model tells
  for layer in probe.layers:
    old = ch.layers.get(layer.name)
    if old is None or not old.weights:
      continue
    weights = [keras.ops.convert_to_numpy(w) for w in old.weights]
    layer.set_weights(weights)
    # The channels of its groups that the structure removes; a layer that
    # vanishes because its inputs did keeps computing them.
    removed = (_removed(plan, ch.layer_out[layer.name], kept)
               if layer.name in ch.layer_out else np.zeros([0], int))
    if not removed.size or ch.rule(old).constant_channels(
        old, weights, removed) is None:
      continue
    read = _zero_filters_read(ch, old)
    if read is None:
      undecided.append(layer.name)
    else:
      removed = np.setdiff1d(removed, read)
    silenced[layer.name] = (old, weights, removed)
  # The probe holds the model's weights so far: run it to find the inputs
  # that are constant already.
  for name, constant in _constant_inputs(probe, undecided).items():
    old, weights, removed = silenced[name]
    silenced[name] = (old, weights, np.setdiff1d(removed, constant))
  for name, (old, weights, removed) in silenced.items():
    if removed.size:
      probe.get_layer(name).set_weights(
          ch.rule(old).constant_channels(old, weights, removed))
  return probe


def _constant_inputs(probe, names) -> Dict[str, np.ndarray]:
  """{name: the input channels of layer `name` that are constant}, run on
  `probe` holding the model's weights.

  A channel is constant when it does not depend on the model's inputs: it
  is the same, position by position, on the two samples (`_samples`:
  zeros and a random input). Such a channel died before the layer (a zero
  filter, then batch norms or activations; a concatenation or a sum of
  dead channels), and a batch norm maps it as the model does: its weights
  stay there (see `_zero_filters_read`, the case of a batch norm right
  after the filter, told without running the model). A channel that
  varies over positions only (zero padding around a dead channel) is
  constant too: the probe then computes what the model does, and folding
  measures the variation (not exact, reported).
  """
  if not names:
    return {}
  tap_model, present = nesting.tap(probe, names)
  constant = {}
  for name, x in zip(present, _run_tap(tap_model, _samples(probe))):
    if x.ndim < 2 or x.shape[0] != 2:
      continue  # Not one row per sample: none is told constant.
    x = x.astype(np.float64).reshape([2, -1, x.shape[-1]])
    change = np.abs(x[1] - x[0]).max(axis=0)
    scale = 1.0 + np.abs(x).max(axis=(0, 1))
    constant[name] = np.flatnonzero(change <= _CONSTANT_TOLERANCE * scale)
  return constant


def _token_bound(model) -> int:
  """Integer inputs are drawn below this: the smallest vocabulary of the
  model's Embedding layers, nested models' included (2 without one)."""
  sizes = [int(l.input_dim) for l in nesting.leaf_layers(model)
           if isinstance(l, keras.layers.Embedding)]
  return max(min(sizes), 1) if sizes else 2


def _zero_filters_read(ch, layer) -> Optional[np.ndarray]:
  """The channels of a pass-through `layer` (a batch norm) that it reads
  from a width-taking layer whose kernel columns are zero there.

  Those channels died by their filters (as a GroupLasso regularizer
  kills them) and are constant already (the producer's bias): `layer`
  keeps its weights there, so that it maps them as the model does. A batch
  norm after such a filter outputs beta + gamma (bias - mean) /
  sqrt(variance + epsilon), not beta.

  Returns:
    The channels (none for a width-taking `layer`, which silences its
    removed channels itself), or None when `layer` does not read a
    width-taking layer's output directly (a batch norm after another
    batch norm, an activation, a concatenation or a sum): only a run of
    the model tells which of its input channels are constant
    (`_constant_inputs`). A layer called several times silences its
    removed channels.
  """
  none = np.zeros([0], int)
  if ch.rule(layer).width_attribute:
    return none
  inputs = [inputs for source, inputs, _ in ch.nodes if source is layer]
  if len(inputs) != 1 or len(inputs[0]) != 1:
    return none  # Called several times: silenced.
  producer = [source for source, _, outputs in ch.nodes
              if any(t is inputs[0][0] for t in outputs)]
  if (len(producer) != 1 or not ch.rule(producer[0]).width_attribute or
      ch.layer_out.get(producer[0].name) is not ch.layer_in[layer.name][0]):
    return None
  scores = ch.rule(producer[0]).channel_scores(producer[0])
  return None if scores is None else np.flatnonzero(np.asarray(scores) == 0)


def _samples(model) -> List[np.ndarray]:
  """Zeros and a fixed random sample (batch 2) for every model input
  (random token ids for an integer input)."""
  rng = np.random.default_rng(0)
  samples = []
  for tensor in model.inputs:
    shape = [_SPATIAL_DEFAULT if d is None else int(d)
             for d in tuple(tensor.shape)[1:]]
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    data = np.zeros([2] + shape, dtype)
    if 'float' in dtype:
      data[1] = rng.normal(size=shape)
    elif 'int' in dtype:
      data[1] = rng.integers(0, _token_bound(model), size=shape)
    samples.append(data)
  return samples


def _run_tap(tap_model, samples) -> List[np.ndarray]:
  # A compiled predict function (made once per tap model) that reads the
  # variables as they are when called: ~30x faster than an eager call.
  outputs = tap_model.predict_on_batch(list(samples))
  if not isinstance(outputs, (list, tuple)):
    outputs = [outputs]
  return [keras.ops.convert_to_numpy(y) for y in outputs]


def _embed(x_new: np.ndarray, like: np.ndarray, indices) -> np.ndarray:
  """x_new's channels at `indices` of an array shaped as `like`."""
  embedded = np.zeros_like(like)
  embedded[..., indices] = x_new
  return embedded


def _affine_part(layer):
  """A new layer like `layer` without its activation (unbuilt)."""
  config = layer.get_config()
  if 'activation' in config:
    config['activation'] = 'linear'
  return layer.__class__.from_config(config)


def _centre(array: np.ndarray) -> np.ndarray:
  """array[0, centre position...] -> a vector over the last axis."""
  index = (0,) + tuple(d // 2 for d in array.shape[1:-1])
  return array[index]


class _Folder(object):
  """Folds, in run order, each affine layer's constant (see module doc)."""

  def __init__(self, new_model, plan, kept):
    self.plan = plan
    self.kept = kept
    self.ch = plan.channels
    self.new_layers = {l.name: l for l in nesting.leaf_layers(new_model)}
    self.readers = self._readers()
    self.approximate = []  # (layer description, max deviation)
    self.lost = []  # layers whose constant has nowhere to go

  def _readers(self):
    readers = {}
    for layer, inputs, _ in self.ch.nodes:
      for tensor in inputs:
        readers.setdefault(id(tensor), []).append(layer)
    return readers

  def _only_batch_norm_after(self, name):
    layer = self.ch.layers[name]
    outputs = [o for l, _, o in self.ch.nodes if l is layer]
    if len(outputs) != 1:
      return None
    readers = self.readers.get(id(outputs[0][0]), [])
    if (len(readers) == 1 and
        isinstance(readers[0], keras.layers.BatchNormalization) and
        readers[0].name in self.new_layers):
      return self.new_layers[readers[0].name]
    return None

  def delta(self, name, x_probe, x_new) -> Tuple[np.ndarray, float, bool]:
    """The constant to fold for layer `name`, how far from constant, and
    whether folding it brings the layer's outputs closer on average (the
    mean absolute difference over the random input's positions drops):
    a difference that varies from input to input (after a normalization
    over channels that lost some, see `builtin_rules.ChannelNormRule`) is
    no constant, and folding one sample's value would add noise."""
    old = self.ch.layers[name]
    in_idx = self.plan.indices(self.plan.eff_in[name][0], self.kept)
    out_idx = self.plan.indices(self.plan.eff_out[name], self.kept)
    twin = _affine_part(old)
    twin(x_probe)  # Builds it.
    twin.set_weights([keras.ops.convert_to_numpy(w) for w in old.weights])
    full = keras.ops.convert_to_numpy(twin(x_probe)) - (
        keras.ops.convert_to_numpy(twin(_embed(x_new, x_probe, in_idx))))
    full = full[..., out_idx]
    delta = _centre(full)
    deviation = float(np.max(np.abs(full - delta))) if full.size else 0.0
    # Judged on the random input (the zeros gave `delta`).
    helps = (not full.size or
             float(np.mean(np.abs(full[-1] - delta))) <
             float(np.mean(np.abs(full[-1]))))
    return delta, deviation, helps

  def recurrent_delta(self, name, x_probe, x_new
                      ) -> Tuple[List[np.ndarray], float, bool]:
    """`delta` for a recurrent layer (see `_recurrent_consumers`): per
    direction, the difference its input kernel makes of the probe's and
    the rebuilt model's inputs, on the input-bias columns of the surviving
    units (gate after gate), with how far from constant over steps and
    samples and whether it helps (judged as in `delta`, on all directions
    together)."""
    old = self.ch.layers[name]
    in_idx = self.plan.indices(self.plan.eff_in[name][0], self.kept)
    difference = (x_probe.astype(np.float64) -
                  _embed(x_new, x_probe, in_idx).astype(np.float64))
    deltas, fulls = [], []
    for rnn, units in zip(builtin_rules.recurrent_directions(old),
                          _surviving_units(self.plan, self.kept, old)):
      kernel = keras.ops.convert_to_numpy(rnn.cell.kernel).astype(
          np.float64)
      columns = builtin_rules._gate_columns(  # pylint: disable=protected-access
          units, int(rnn.units),
          builtin_rules.RECURRENT_GATES[type(rnn).__name__])
      full = difference @ kernel[:, columns]
      deltas.append(_centre(full))
      fulls.append(full)
    full = np.concatenate(fulls, axis=-1)
    delta = np.concatenate(deltas)
    deviation = float(np.max(np.abs(full - delta))) if full.size else 0.0
    helps = (not full.size or
             float(np.mean(np.abs(full[-1] - delta))) <
             float(np.mean(np.abs(full[-1]))))
    return deltas, deviation, helps

  def fold_recurrent(self, name, deltas) -> None:
    """Adds each direction's delta to its input bias (a GRU with
    reset_after: the first row), exact for every kind: the input kernel's
    product and that bias are summed before any nonlinearity."""
    new = self.new_layers[name]
    directions = builtin_rules.recurrent_directions(new)
    if not all(rnn.cell.use_bias for rnn in directions):
      self.lost.append(layer_rule.describe_layer(new))
      return
    for rnn, delta in zip(directions, deltas):
      bias = keras.ops.convert_to_numpy(rnn.cell.bias)
      if bias.ndim == 2:  # GRU with reset_after: [input, recurrent] biases.
        bias[0] += delta.astype(bias.dtype)
      else:
        bias = bias + delta.astype(bias.dtype)
      rnn.cell.bias.assign(bias)

  def fold(self, name, delta) -> None:
    new = self.new_layers[name]
    bias = getattr(new, 'bias', None)
    if getattr(new, 'use_bias', False) and bias is not None:
      bias.assign(keras.ops.convert_to_numpy(bias) + delta)
      return
    batch_norm = self._only_batch_norm_after(name)
    if batch_norm is not None:
      mean = keras.ops.convert_to_numpy(batch_norm.moving_mean)
      batch_norm.moving_mean.assign(mean - delta)
      return
    self.lost.append(layer_rule.describe_layer(new))


def _affine_consumers(plan) -> List[str]:
  """Names of the surviving affine one-input layers, in run order."""
  ch = plan.channels
  names = []
  for layer, inputs, _ in ch.nodes:
    if (ch.rule(layer).affine and len(inputs) == 1 and layer.weights and
        layer.name not in plan.vanished and layer.name not in names):
      names.append(layer.name)
  return names


def _foldable_recurrent(plan, layer) -> bool:
  """Whether `layer` is a recurrent layer (`builtin_rules.RecurrentRule`)
  whose directions are SimpleRNN, GRU or LSTM layers, built, reading one
  input: its input kernels take folded constants."""
  if not isinstance(plan.channels.rule(layer), builtin_rules.RecurrentRule):
    return False
  return all(type(rnn).__name__ in builtin_rules.RECURRENT_GATES and
             getattr(getattr(rnn, 'cell', None), 'kernel', None) is not None
             for rnn in builtin_rules.recurrent_directions(layer))


def _surviving_units(plan, kept, layer) -> List[np.ndarray]:
  """Per direction of recurrent `layer`, the units the rebuild keeps (all
  of them when its units keep their width)."""
  units = builtin_rules.recurrent_units(layer)
  directions = builtin_rules.recurrent_directions(layer)
  if units is None:
    return [np.arange(int(rnn.units)) for rnn in directions]
  out_idx = np.asarray(plan.indices(plan.eff_out[layer.name], kept))
  surviving = np.unique(out_idx[out_idx < units])
  return [surviving for _ in directions]


def _recurrent_consumers(plan) -> List[str]:
  """Names of the surviving recurrent layers taking folded constants
  (`_foldable_recurrent`), in run order."""
  ch = plan.channels
  names = []
  for layer, inputs, _ in ch.nodes:
    if (len(inputs) == 1 and layer.name not in plan.vanished and
        layer.name not in names and _foldable_recurrent(plan, layer)):
      names.append(layer.name)
  return names


def _mixers(plan) -> List[str]:
  """Surviving layers that are neither affine nor channelwise (but for the
  recurrent layers taking folded constants)."""
  ch = plan.channels
  names = []
  recurrent = set(_recurrent_consumers(plan))
  for layer, inputs, _ in ch.nodes:
    rule = ch.rule(layer)
    if (not rule.affine and not rule.channelwise and inputs and
        layer.name not in plan.vanished and layer.name not in names and
        layer.name not in recurrent):
      names.append(layer.name)
  return names


def _differs(x_probe, x_new, indices,
             tolerance: float = _RELATIVE_TOLERANCE) -> bool:
  """Whether x_new at `indices`, zeros elsewhere, differs from x_probe."""
  if not x_probe.size:
    return False
  embedded = _embed(x_new, x_probe, indices)
  scale = 1.0 + float(np.max(np.abs(x_probe)))
  return float(np.max(np.abs(x_probe - embedded))) > tolerance * scale


def _deviation(want: np.ndarray, got: np.ndarray) -> Optional[float]:
  """max |want - got| if it exceeds the relative tolerance, else None."""
  if want.shape != got.shape or not want.size:
    return None
  deviation = float(np.max(np.abs(want.astype(np.float64) - got)))
  scale = 1.0 + float(np.max(np.abs(want)))
  return deviation if deviation > _RELATIVE_TOLERANCE * scale else None


def _not_constant(plan, names, samples, x_probe, probe_outputs
                  ) -> List[Tuple[str, float]]:
  """Where the removed channels are not constant in the model.

  Folding makes the rebuilt model compute what the probe does
  (`probe_model`: the removed channels made exactly constant). The probe
  computes what the model does when the model's removed channels are
  constant already: their batch-norm gammas or kernel columns are 0 where
  the regularizer reads them. A removed channel the regularizer never read
  is not (a layer without batch norm, under a Gamma regularizer, whose
  output is summed with or the maximum of a dead channel: the group dies
  by the batch norm alone), nor is one a structure removes alive (a gamma
  above 0, explicit widths below the alive counts): the model's outputs
  then depend on it and no constant makes up for its loss.

  Args:
    plan: the rebuild plan.
    names: the layers whose inputs the probe was tapped at (consumers and
      mixers).
    samples: the inputs the probe ran on.
    x_probe: {name: the probe's input of layer `name`}.
    probe_outputs: the probe's outputs.

  Returns:
    [] when the model's outputs are the probe's; else [(description,
    largest difference)] for the layers, in run order, whose inputs differ
    in the model and the probe (the first read the removed channels that
    are not constant), or for the model's outputs that differ if no such
    layer reads them.
  """
  ch = plan.channels
  model_tap, model_names = nesting.tap(ch.functional, names,
                                       with_outputs=True)
  run = _run_tap(model_tap, samples)
  outputs = [(i, _deviation(o, p)) for i, (o, p) in enumerate(
      zip(run[len(model_names):], probe_outputs))]
  outputs = [(i, d) for i, d in outputs if d is not None]
  if not outputs:
    return []
  x_model = dict(zip(model_names, run))
  found, seen = [], set()
  for layer, _, _ in ch.nodes:  # Run order.
    name = layer.name
    if name in seen or name not in x_model or name not in x_probe:
      continue
    seen.add(name)
    deviation = _deviation(x_model[name], x_probe[name])
    if deviation is not None:
      found.append((layer_rule.describe_layer(layer), deviation))
  return found or [('output %d of the model' % i, d) for i, d in outputs]


def fold_constants(new_model, plan: plan_lib.RebuildPlan,
                   kept: Dict[int, np.ndarray]) -> Dict[str, List]:
  """Folds the constants of removed channels into `new_model`'s layers.

  Args:
    new_model: the rebuilt model, with weights transferred (changed in
      place: biases and batch-norm moving means).
    plan: its rebuild plan.
    kept: {group root: surviving channel indices}.

  Returns:
    {'folded': names of the layers given a nonzero constant,
     'approximate': [(layer, largest deviation)] where it is not exact,
     'lost': layers whose constant had nowhere to go,
     'not_affine': layers that are neither affine nor channelwise and lose
       input channels or see shifted ones,
     'not_constant': [(layer, largest difference)] where removed channels
       that are not constant in the model reach (`_not_constant`)}.
  """
  recurrent = set(_recurrent_consumers(plan))
  consumers = set(_affine_consumers(plan)) | recurrent
  consumers = list(dict.fromkeys(  # Run order, once each.
      layer.name for layer, _, _ in plan.channels.nodes
      if layer.name in consumers))
  mixers = _mixers(plan)
  probe = probe_model(plan, kept)
  samples = _samples(probe)
  probe_tap, probe_names = nesting.tap(probe, consumers + mixers,
                                       with_outputs=True)
  probe_run = _run_tap(probe_tap, samples)
  x_probe = dict(zip(probe_names, probe_run))
  not_constant = _not_constant(plan, consumers + mixers, samples, x_probe,
                               probe_run[len(probe_names):])
  new_tap, new_names = nesting.tap(new_model, consumers + mixers)
  folder = _Folder(new_model, plan, kept)
  folded = []
  x_new = dict(zip(new_names, _run_tap(new_tap, samples)))
  for name in consumers:
    if name not in x_probe or name not in x_new or not _differs(
        x_probe[name], x_new[name],
        plan.indices(plan.eff_in[name][0], kept), tolerance=0.0):
      continue  # Its input is the probe's: nothing to fold.
    if name in recurrent:
      deltas, deviation, helps = folder.recurrent_delta(
          name, x_probe[name], x_new[name])
      delta = np.concatenate(deltas)
    else:
      delta, deviation, helps = folder.delta(name, x_probe[name],
                                             x_new[name])
    scale = 1.0 + float(np.max(np.abs(delta))) if delta.size else 1.0
    if deviation > _RELATIVE_TOLERANCE * scale:
      folder.approximate.append(
          (layer_rule.describe_layer(plan.channels.layers[name]), deviation))
    if not delta.size or not np.any(np.abs(delta) > 0) or not helps:
      continue
    if name in recurrent:
      folder.fold_recurrent(name, deltas)
    else:
      folder.fold(name, delta)
    folded.append(name)
    x_new = dict(zip(new_names, _run_tap(new_tap, samples)))
  not_affine = []
  for name in mixers:
    indices = plan.indices(plan.eff_in[name][0], kept)
    # A normalization over channels changes with their number, even when
    # the removed ones are zeros; other layers with removed nonzero inputs.
    rule = plan.channels.rule(name)
    counted = (isinstance(rule, builtin_rules.ChannelMixingRule) and
               not rule.narrows_exactly)
    if name in x_probe and name in x_new and (
        (counted and len(indices) < x_probe[name].shape[-1]) or
        _differs(x_probe[name], x_new[name], indices)):
      not_affine.append(
          layer_rule.describe_layer(plan.channels.layers[name]))
  _report(new_model.name, folder.approximate, folder.lost, not_affine,
          not_constant)
  return {'folded': folded, 'approximate': folder.approximate,
          'lost': folder.lost, 'not_affine': not_affine,
          'not_constant': not_constant}


def _largest(deviations) -> str:
  """'name 0.123, ...' of (layer description, deviation) pairs."""
  return ', '.join('%s %.3g' % item for item in deviations)


def _report(model_name, approximate, lost, not_affine,
            not_constant=()) -> None:
  if approximate:
    logging.info(
        'Folded constants of removed channels into %r: not exact for %d '
        "layers (zero padding at the borders of 'same' convolutions, "
        'transposed-conv strides, or a constant passing a nonlinearity '
        'with live channels); exact at interior positions of the first. '
        'Largest deviations: %s', model_name, len(approximate),
        _largest(approximate))
  for description in lost:
    logging.warning(
        'Cannot fold the constant output of removed channels into layer %s '
        'of %r: it has no bias and no BatchNormalization alone after it. '
        'The rebuilt model differs from the regularized one by that '
        'constant; fine-tune it, or give the layer a bias.', description,
        model_name)
  for description in not_affine:
    logging.warning(
        'Cannot fold the constant output of removed channels into layer %s '
        'of %r: it mixes channels in a way that is not affine (normalizing '
        'over channels, attention, recurrence, or unknown to rebuild), so '
        'its outputs change with the channels removed from its input. The '
        'rebuilt model differs from the regularized one after it; '
        'fine-tune it.', description, model_name)
  if not_constant:
    logging.warning(
        'Removed channels are not constant in %r: the rebuilt outputs are '
        'not exact for %d layers reading them, which no folded constant '
        'makes up for (a layer without batch norm summed with, multiplied '
        'by or the maximum of a dead channel under a Gamma regularizer, a '
        'batch-norm gamma not at 0, or widths below the alive counts). '
        'Largest differences from the regularized model: %s. Fine-tune '
        'the rebuilt model.', model_name, len(not_constant),
        _largest(not_constant))
