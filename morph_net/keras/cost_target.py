"""A cost target instead of a strength: the strength follows the budget.

    regularizer = ModelRegularizer(model, GammaFlopsRegularizer,
                                   gamma_threshold=0.05)
    budget = CostTargetCallback(regularizer,
                                target_cost=0.5 * regularizer.initial_cost)
    model.fit(..., callbacks=[budget])   # FLOPs reach 50% and stay there

MorphNet minimizes `data loss + strength * term`; the cost the network ends
at depends on the strength, and the original left the user to sweep it. A
budget is a constraint, cost <= target, and the strength is its Lagrange
multiplier: constrained-optimization pruning methods update the multiplier by
dual ascent on the constraint's violation while the weights descend the
Lagrangian (e.g. Sheared-LLaMA's learned masks with Lagrangian constraints).

`CostTargetController` does that on the strength, with three changes that
the MorphNet cost needs:

- **Multiplicative (log-space) ascent.** The strength that reaches a target
  spans orders of magnitude across networks and resources; the update is
  `log(m) += gain * violation` with `m = strength * initial_cost`, the
  multiplier of the original's "start near 1 / initial cost" advice, and the
  violation `cost / target - 1` (clipped to [-1, 1]). It starts small
  (`initial_multiplier`, 0.1): with a large strength every channel shrinks
  at once (adaptive optimizers move every pressured weight at about the
  learning rate) and they die together, far below the target.
- **A lead cost and a brake.** The cost only changes when a regularization
  value crosses the alive threshold, tens or hundreds of steps after the
  strength changed, and a channel that crossed takes many steps to grow
  back. `CostTargetCallback` therefore also computes the cost of the
  channels that will still be alive `lead_steps` steps ahead (each
  regularization value extrapolated along its smoothed velocity): when that
  lead cost passes under the target, the strength is cut at once (`brake`)
  and the ascent waits.
- **Equality, not only <=.** Below the target the strength decreases, so
  channels the data loss needs grow back: the cost settles at the target
  rather than anywhere under it, approaching it from above.
- **A rescue below the target.** Braking is not enough: after the
  strength stopped pushing, the values in flight (an adaptive optimizer's
  momentum) and the data loss keep carrying channels across the alive
  threshold (keras.applications MobileNetV2 fell to 93% of its FLOP target
  with the strength at its floor). The multiplier of an equality
  constraint has no sign, and its negative side is the rescue: while the
  cost is under the target, the loss gains `rescue_strength * rescue_term` (`ModelRegularizer.rescue_term`),
  which pushes the alive channels within the rescue band (twice the alive
  threshold) up, away from the threshold. It acts on no other channel, so
  the dead stay dead and the rest of the network trains as before.
- **Lead variables.** A regularizer whose values jump can name the
  variables they follow (`lead_variables()`, see `morph_net.keras.lead`):
  the lead then extrapolates those (and reads the cost there), and the
  rescue keeps their entries at or above their value when the cost went
  under the target. The LogisticSigmoid (FiGS) family does: a gate's
  regularization value is its inference mask, exactly 0 or 1, with no
  velocity before it crosses and never within the rescue band; its
  log-odds lead it.

The cost is `ModelRegularizer.cost()`, the cost of the network with its dead
channels removed (what `rebuild` gives). `CostTargetCallback` runs the
controller in `fit` and shows `morph_net_strength` and the target in the
logs (so in the progress bar, `History` and Keras's TensorBoard callback);
`CostTargetController` is the same for a custom training loop or a TF1
session: call `update(cost)` and use the strength it returns.
"""

import math
from typing import Optional

from absl import logging
import gin
import numpy as np

from morph_net import errors
from morph_net.compat import keras as compat
from morph_net.keras import lead as lead_lib

__all__ = ['CostTargetController', 'CostTargetCallback']

_keras = compat.get_keras()


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
  return errors.check_number(name, value, allow_zero)


@gin.configurable(module='morph_net')
class CostTargetController(object):
  """Updates a MorphNet strength so that the cost reaches a target and stays.

  The state is the multiplier `m = strength * initial_cost` in log space, an
  integral part `I` and a brake. Each update, with the cost `c` and the lead
  cost `l` (<= c) after `steps` optimizer steps:

      v = clip(c / target - 1, -1, 1)     the constraint's violation
      u = clip(l / target - 1, -1, 1)     the violation the lead sees
      I += gain * steps * (0 if u < -margin and v > 0 else v)
      log(m) = I + brake * min(u + margin, 0)      (kept in its bounds)
      rescue multiplier = rescue * exp(I)  if v < 0, else 0

  The integral is the dual ascent on the constraint. It waits while the
  lead cost is more than `lead_margin` under the target but the cost is
  not yet (channels are on
  their way out: more strength would overshoot, and channels that crossed
  the alive threshold take many steps to grow back), and the brake cuts
  the strength as soon as the lead cost passes `lead_margin` under the
  target. The cost
  therefore approaches the target from above.

  Args:
    target_cost: the cost to reach, in the regularizer's unit (FLOPs,
      weights, ns, ...); `initial_cost` times a fraction for a relative
      budget.
    initial_cost: the cost of the full network (`regularizer.initial_cost`);
      it scales the strength like `set_strength_relative_to_cost`.
    initial_multiplier: the first strength times `initial_cost`.
    gain: change of log(m) per optimizer step at a violation of 1 (the
      dual ascent's step size).
    brake: how strongly a lead cost under the target cuts log(m). At the
      default, 100, a lead 1% under cuts the strength by e (2.7x) and
      5% under by e^5 (150x): under an adaptive optimizer (Adam) a
      pressured value moves at about the learning rate whatever the
      strength, so only a near-zero strength stops channels on their way
      out (10 let keras.applications MobileNetV2 fall to 77% of its
      FLOP target; 100 holds it at 101%).
    min_multiplier: lower bound of `m`.
    max_multiplier: upper bound of `m`.
    lead_margin: how far under the target (a fraction of it) the lead cost
      may go before the brake acts and the ascent waits. The lead
      extrapolates noisy values: on a ResNet whose gammas settle near the
      threshold, a lead a few percent under the target is mostly noise, and
      braking on it (margin 0) held the cost 1-8% above the target for 12
      epochs.
    rescue: the rescue's force on a channel in the band, relative to the
      average force the term exerts on a channel at the un-braked
      multiplier `exp(I)` (see `rescue_multiplier`); 0 turns the rescue
      off (also `CostTargetCallback`'s hold on lead variables, e.g. the
      gates' log-odds). On keras.applications MobileNetV2 (FLOPs 0.5, seed 0) 0 let
      the cost fall to 92-93% of the target after the brake; 10 pushed
      channels back past it and the cost wandered at 99-106%; 1 held it
      at 97-103%.

  Raises:
    InvalidArgumentError: for a target or initial cost that is not positive
      and finite, a target above the initial cost, negative gains or
      margin, or bounds that do not contain `initial_multiplier`.
  """

  def __init__(self, target_cost: float, initial_cost: float,
               initial_multiplier: float = 0.1, gain: float = 0.01,
               brake: float = 100.0, min_multiplier: float = 1e-4,
               max_multiplier: float = 1e4, lead_margin: float = 0.02,
               rescue: float = 1.0):
    self.target_cost = _check_positive('target_cost', target_cost)
    self.initial_cost = _check_positive('initial_cost', initial_cost)
    if self.target_cost > self.initial_cost:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `target_cost`: %g is above the initial '
          'cost %g, which the network already meets. Give a target below '
          'the initial cost (e.g. 0.5 * regularizer.initial_cost).' %
          (self.target_cost, self.initial_cost))
    if self.target_cost <= 1 < self.initial_cost:
      logging.warning(
          'CostTargetController: target_cost=%g is absolute, in the '
          "regularizer's unit (the initial cost is %g), not a fraction. For "
          '%g of the initial cost, pass target_cost=%g * '
          'regularizer.initial_cost.', self.target_cost, self.initial_cost,
          self.target_cost, self.target_cost)
    self.gain = _check_positive('gain', gain)
    self.brake = _check_positive('brake', brake, allow_zero=True)
    self.lead_margin = _check_positive('lead_margin', lead_margin,
                                       allow_zero=True)
    self.rescue = _check_positive('rescue', rescue, allow_zero=True)
    low = _check_positive('min_multiplier', min_multiplier)
    high = _check_positive('max_multiplier', max_multiplier)
    start = _check_positive('initial_multiplier', initial_multiplier)
    if not low <= start <= high:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `initial_multiplier`: %g is outside '
          '[min_multiplier, max_multiplier] = [%g, %g].' % (start, low, high))
    self._log_bounds = (math.log(low), math.log(high))
    self._integral = math.log(start)
    self._lead = 0.0
    self._violation = 0.0
    self.updates = 0

  def _clip_log(self, value: float) -> float:
    low, high = self._log_bounds
    return min(high, max(low, value))

  @property
  def multiplier(self) -> float:
    """strength * initial_cost."""
    return math.exp(self._clip_log(
        self._integral + self.brake * min(self._lead + self.lead_margin,
                                          0.0)))

  @property
  def strength(self) -> float:
    """The strength to use now."""
    return self.multiplier / self.initial_cost

  @property
  def rescuing(self) -> bool:
    """Whether the last update found the cost under the target.

    Not on the lead cost alone: rescuing while the cost is still above the
    target also pushed up the dead channels that the data loss's jitter
    carried just over the threshold, and kept them (MobileNetV2, FLOPs 0.5:
    the cost then wandered at 101-106% of the target). Under the target,
    a channel revived that way only lasts until the cost is back above.
    """
    return self.rescue > 0 and self.updates > 0 and self._violation < 0

  @property
  def rescue_multiplier(self) -> float:
    """The rescue's force relative to one channel's average share of the
    term: `rescue * exp(I)` while `rescuing`, else 0.

    To turn it into `ModelRegularizer.rescue_strength`, divide by the
    initial cost and multiply by the term's average force per channel,
    `term / sum(regularization values)` (`CostTargetCallback` does).
    """
    if not self.rescuing:
      return 0.0
    return self.rescue * math.exp(self._integral)

  def violation(self, cost: float) -> float:
    """cost / target_cost - 1 clipped to [-1, 1]: positive above target."""
    return min(1.0, max(-1.0, float(cost) / self.target_cost - 1.0))

  def update(self, cost: float, lead_cost: Optional[float] = None,
             steps: int = 1) -> float:
    """One update after `steps` optimizer steps.

    Args:
      cost: the current cost with dead channels removed.
      lead_cost: the cost counting as dead also the channels about to die
        (see `CostTargetCallback`'s `lead`); default `cost`.
      steps: optimizer steps since the previous update (>= 1).

    Returns:
      The new strength.

    Raises:
      InvalidArgumentError: for a cost that is not a finite number >= 0.
    """
    cost = _check_positive('cost', cost, allow_zero=True)
    lead_cost = (cost if lead_cost is None else
                 _check_positive('lead_cost', lead_cost, allow_zero=True))
    violation = self.violation(cost)
    self._violation = violation
    self._lead = self.violation(lead_cost)
    if not (self._lead < -self.lead_margin and violation > 0):
      self._integral = self._clip_log(
          self._integral + self.gain * max(int(steps), 1) * violation)
    self.updates += 1
    return self.strength

  def get_config(self) -> dict:
    return {'target_cost': self.target_cost,
            'initial_cost': self.initial_cost,
            'initial_multiplier': math.exp(self._integral),
            'gain': self.gain, 'brake': self.brake,
            'lead_margin': self.lead_margin, 'rescue': self.rescue,
            'min_multiplier': math.exp(self._log_bounds[0]),
            'max_multiplier': math.exp(self._log_bounds[1])}


def _structure_cost_of(regularizer):
  """The StructureCost of a regularizer's engine: the layer-level one for a
  `LayerRegularizer` (any backend, no TensorFlow), else the graph
  engine's."""
  # Imported here: both import the engines' modules.
  # pylint: disable=g-import-not-at-top
  from morph_net.keras import layer_regularizer
  if isinstance(regularizer, layer_regularizer.LayerRegularizer):
    from morph_net.keras import layer_structure_cost
    return layer_structure_cost.LayerStructureCost(regularizer)
  from morph_net.keras import structure_cost
  # pylint: enable=g-import-not-at-top
  return structure_cost.StructureCost(regularizer)


@gin.configurable(module='morph_net')
class CostTargetCallback(_keras.callbacks.Callback):
  """Adapts `regularizer.strength` during `fit` so the cost meets a budget.

  Every `update_every` optimizer steps it reads `regularizer.cost()` (the
  cost with dead channels removed) and the lead cost (the cost of the
  structure whose regularization values, extrapolated `lead_steps` steps
  along their smoothed velocity, stay above the alive threshold; through
  `StructureCost`), and sets the strength by `CostTargetController`.
  Adaptive optimizers move every pressured value at about the learning
  rate, so a channel on its way out is seen falling long before it crosses
  the threshold, while a channel that settled (alive, at any value) is
  not. The strength set when training starts replaces
  any strength given before. It adds `morph_net_strength` and
  `<cost name>_target` (e.g. `flops_target`) to the batch and epoch logs, so
  they show in the progress bar, `History` and Keras's TensorBoard callback
  (`CostSummaryCallback` writes the strength too). While the controller
  rescues (`CostTargetController.rescuing`: the cost under the target), it
  sets `regularizer.rescue_strength` to the
  controller's `rescue_multiplier` in the term's units: divided by the
  initial cost and multiplied by the term's average force per unit of
  regularization value (the term over the sum of the values, read when
  the rescue starts); otherwise to 0. Under a `tf.distribute` strategy
  the strength variables are assigned from the host, like any
  non-trainable variable.

  For a regularizer with lead variables (`lead_variables`, see
  `morph_net.keras.lead`), the velocities are those of the variables: the
  lead cost is `regularizer.cost()` with every variable moved `lead_steps`
  steps along its significant velocity (then put back), and while the
  controller rescues, no entry falls under its value when the rescue
  started (a projection). The LogisticSigmoid family (FiGS gates) has
  them: its regularization values are the gates' inference masks (exactly
  0 or 1, `log_odds > 0`), its lead variables the gates' log-odds, and
  `rescue_term` never acts on a 0/1 mask. Measured on the results table's
  VGG (FLOPs 50%, Adam 5e-3): every pressured log-odds falls at the same
  rate from the same 2.5, and with the masks' velocities the cost went
  from 200% to 50.9% of the target in one epoch; see docs/BUDGET.md.

  Args:
    regularizer: a `morph_net.keras.ModelRegularizer` whose loss (through
      `wrap_loss`) the model trains with.
    target_cost: the budget in the regularizer's unit (absolute, like
      `regularizer.initial_cost`, which is the start).
    lead_steps: how far ahead, in optimizer steps, the lead cost looks (0
      turns the lead off: the controller then brakes on the cost itself).
    smoothing: weight of the newest change in the velocities' moving
      average, in (0, 1].
    update_every: optimizer steps between updates.
    significance: a value is extrapolated only when its smoothed velocity
      is larger than `significance` standard errors of that average (the
      spread of its per-step changes, from a moving average of their
      squares): under Adam every value jitters by about the learning rate
      per step, and extrapolating the jitter of the many values parked just
      above the threshold made the lead predict deaths that never came
      (the main job's CNN held at 105% of its target, a ResNet at 104-119%,
      with the brake on). 0 extrapolates every velocity.
    **controller_kwargs: `CostTargetController` arguments (`gain`, `brake`,
      `initial_multiplier`, bounds).

  Raises:
    InvalidArgumentError: as `CostTargetController`, or for `update_every`
      below 1, a negative `lead_steps` or `significance`, or `smoothing`
      outside (0, 1].
  """

  def __init__(self, regularizer, target_cost: float,
               lead_steps: float = 50.0, smoothing: float = 0.1,
               update_every: int = 1, significance: float = 2.0,
               **controller_kwargs):
    super().__init__()
    if int(update_every) < 1:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `update_every`. Expected an integer '
          '>= 1. Received: update_every=%r' % (update_every,))
    self.lead_steps = _check_positive('lead_steps', lead_steps,
                                      allow_zero=True)
    self.smoothing = _check_positive('smoothing', smoothing)
    self.significance = _check_positive('significance', significance,
                                        allow_zero=True)
    if self.smoothing > 1:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `smoothing`. Expected a number in '
          '(0, 1]. Received: smoothing=%r' % (smoothing,))
    self.regularizer = regularizer
    self.controller = CostTargetController(
        target_cost, regularizer.initial_cost, **controller_kwargs)
    self.update_every = int(update_every)
    self._target_name = regularizer.cost_name.lower() + '_target'
    self._since_update = 0
    self._structure_cost = None
    self._values = None  # {layer: regularization vector} at the last update.
    self._velocity = {}  # {layer: its smoothed change per step}.
    self._square = {}  # {layer: the smoothed square of that change}.
    self._lead_refused = False
    self._force = None  # The term's average force per channel, per unit.
    self._gates = None  # [LogisticSigmoidGating] whose log-odds lead.
    self._lead_variables = None  # [variable] the lead extrapolates.
    self._lead_values = None  # {variable index: its value} at the last update.
    self._floors = None  # [values no lead variable falls under, rescuing].

  @property
  def target_cost(self) -> float:
    return self.controller.target_cost

  def _smooth(self, key, value, previous, steps: int) -> None:
    """Moves `key`'s smoothed velocity and squared velocity towards the
    change from `previous` to `value` per step."""
    # A kept layer's values are inf: inf - inf is nan, counted as no
    # change (without numpy's RuntimeWarning at every update).
    with np.errstate(invalid='ignore'):
      change = np.nan_to_num(value - previous, nan=0.0, posinf=0.0,
                             neginf=0.0) / steps
    velocity = self._velocity.get(key, np.zeros_like(value))
    self._velocity[key] = velocity + self.smoothing * (change - velocity)
    square = self._square.get(key, np.zeros_like(value))
    self._square[key] = square + self.smoothing * (change**2 - square)

  def _observe(self, steps: int) -> None:
    """Updates the smoothed velocity of every regularization value (of
    every lead variable's entries, if the regularizer has them)."""
    variables = self.lead_variables
    if variables:
      values = {i: variable.numpy().astype(np.float64)
                for i, variable in enumerate(variables)}
      if self._lead_values is not None:
        for i, value in values.items():
          self._smooth(i, value, self._lead_values[i], steps)
      self._lead_values = values
      return
    values = self.regularizer.regularization_vectors()
    if self._values is not None:
      for name, value in values.items():
        self._smooth(name, value, self._values[name], steps)
    self._values = values

  @property
  def lead_variables(self) -> list:
    """The variables the lead extrapolates and the rescue holds
    (`lead.lead_variables`: the regularizer's own, or the LogisticSigmoid
    family's gates' log-odds), else [] (the lead extrapolates the
    regularization values)."""
    if self._lead_variables is None:
      self._lead_variables = lead_lib.lead_variables(self.regularizer)
    return self._lead_variables

  @property
  def gates(self) -> list:
    """The model's `LogisticSigmoidGating` layers when the regularizer is
    of the LogisticSigmoid family (whose lead variables are their
    log-odds), else []."""
    if self._gates is None:
      self._gates = lead_lib.gate_layers(self.regularizer)
    return self._gates

  def lead_cost(self) -> float:
    """The cost of the channels still alive `lead_steps` steps ahead.

    Each regularization value is extrapolated along its smoothed velocity;
    the structure of the values above the alive threshold is costed by
    `StructureCost` (which equals `cost()` on the current values). Groups
    whose removal would disconnect the network keep the regularizer's
    `min_channels`, as in its alive vectors. A regularizer with lead
    variables has those extrapolated instead (see `lead_variables`).
    """
    if self.lead_variables:
      return self._variable_lead_cost()
    if self._structure_cost is None:
      self._structure_cost = _structure_cost_of(self.regularizer)
    if self._values is None:
      self._observe(1)
    threshold = self.regularizer.alive_threshold
    connecting = set(getattr(self.regularizer, 'connecting_layers', ()))
    floor = getattr(self.regularizer, 'min_channels', 0)
    counts = {}
    for name, value in self._values.items():
      ahead = value + self.lead_steps * self._significant_velocity(name)
      counts[name] = int(np.sum(ahead > threshold))
      if name in connecting:  # As the regularizer's alive vectors do.
        counts[name] = max(counts[name], min(floor, value.size))
    if floor >= 1:
      for one_set in getattr(self.regularizer, 'connecting_sets', ()):
        self._keep_one_group(one_set, counts, floor)
    return self._structure_cost.cost(counts)

  def _variable_lead_cost(self) -> float:
    """The lead cost of a regularizer with lead variables:
    `regularizer.cost()` with every lead variable moved `lead_steps` steps
    along its significant velocity, then restored.

    A gate's regularization value is its inference mask, exactly 0 or 1
    (`log_odds > 0`): it has no velocity until the step it crosses, so
    the values say nothing ahead. The log-odds, its lead variable, do:
    every pressured one moves at about the learning rate under Adam.
    Reading the cost with them in place counts exactly what the
    regularizer counts (the mask or probability against the threshold,
    the first channel kept, groups of gates, `min_channels`).
    """
    if self._lead_values is None:
      self._observe(1)
    ahead = {i: value + self.lead_steps * self._significant_velocity(i)
             for i, value in self._lead_values.items()}
    if not any(np.any(ahead[i] != value)
               for i, value in self._lead_values.items()):
      return float(self.regularizer.cost())
    variables = self.lead_variables
    current = [variable.numpy() for variable in variables]
    try:
      for i, variable in enumerate(variables):
        variable.assign(ahead[i].astype(current[i].dtype))
      return float(self.regularizer.cost())
    finally:
      for variable, value in zip(variables, current):
        variable.assign(value)

  def _keep_one_group(self, one_set, counts, floor) -> None:
    """Where every group of `one_set` is dead in `counts`, the group with
    the largest regularization value keeps `floor` channels (as
    `minimum_alive_regularizer.keep_sets_alive` does)."""
    names = [n for group in one_set for n in group if n in counts]
    if not names or any(counts[n] for n in names):
      return
    largest = [max((float(np.max(self._values[n])) for n in group
                    if n in counts), default=-np.inf) for group in one_set]
    group = one_set[int(np.argmax(largest))]
    for name in group:
      if name in counts:
        counts[name] = min(floor, self._values[name].size)

  def _significant_velocity(self, name):
    """The smoothed velocity of `name`'s values, 0 where it is noise.

    The per-step changes' variance is the moving average of their squares
    minus the square of their average; a moving average with weight `a`
    of independent changes has a standard error of sqrt(a / (2 - a)) times
    their standard deviation.
    """
    velocity = self._velocity.get(name)
    if velocity is None:
      return 0.0
    spread = np.sqrt(np.maximum(self._square[name] - velocity**2, 0.0) *
                     self.smoothing / (2.0 - self.smoothing))
    return np.where(np.abs(velocity) > self.significance * spread, velocity,
                    0.0)

  def _safe_lead_cost(self, cost: float) -> Optional[float]:
    """`lead_cost()` (at most `cost`), or None where it cannot be read.

    Surgery's channel model reads Keras 3 layer graphs only: for a tf_keras
    or subclassed model (or a structure it refuses) the controller brakes on
    the cost itself, and says so once.
    """
    try:
      self._observe(self._since_update)
      return min(cost, self.lead_cost())
    except (errors.UnsupportedModelError, errors.InvalidArgumentError,
            errors.StructureError, ImportError) as e:
      # ImportError: StructureCost needs TensorFlow (other Keras backends).
      self._lead_refused = True
      logging.warning(
          'CostTargetCallback: no lead cost for model %r (%s: %s); the '
          'strength follows the cost alone, which may overshoot the target. '
          'Pass lead_steps=0 to silence this.',
          getattr(self.regularizer.model, 'name', '?'), type(e).__name__, e)
      return None

  def _assign(self, strength: float) -> None:
    self.regularizer.strength.assign(strength)
    rescue = getattr(self.regularizer, 'rescue_strength', None)
    if rescue is None:
      return
    multiplier = self.controller.rescue_multiplier
    if not multiplier:
      self._force = None
      rescue.assign(0.0)
      return
    if self._force is None:  # Read once each time the rescue starts.
      values = [v[np.isfinite(v)] for v in
                self.regularizer.regularization_vectors().values()]
      total = float(sum(np.sum(v) for v in values))
      self._force = (float(self.regularizer.term()) / total if total > 0
                     else 0.0)
    rescue.assign(multiplier / self.controller.initial_cost * self._force)

  def _annotate(self, logs) -> None:
    if logs is not None:
      logs['morph_net_strength'] = self.controller.strength
      logs[self._target_name] = self.controller.target_cost

  def on_train_begin(self, logs=None):
    self._assign(self.controller.strength)
    logging.info('%s: cost target %g (%.1f%% of %g), initial strength %.3g',
                 self.regularizer.name, self.controller.target_cost,
                 100.0 * self.controller.target_cost /
                 self.controller.initial_cost,
                 self.controller.initial_cost, self.controller.strength)

  def on_train_batch_end(self, batch, logs=None):
    self._since_update += 1
    if self._since_update >= self.update_every:
      cost = float(self.regularizer.cost())
      lead = None
      if self.lead_steps and not self._lead_refused:
        lead = self._safe_lead_cost(cost)
      self._assign(self.controller.update(cost, lead, self._since_update))
      self._since_update = 0
      if self.lead_variables:
        self._hold_lead_variables()
    self._annotate(logs)

  def _hold_lead_variables(self) -> None:
    """The rescue on lead variables: while the controller rescues, no
    entry of a lead variable falls under its value when the rescue
    started.

    `rescue_term` pushes up the values within a band above the alive
    threshold; a gate's value is its inference mask, 0 or 1, never in the
    band, so that term does not act on gates. Its aim, that no channel
    dies while the cost is under the target, is met here on the lead
    variables themselves (raising one never removes a channel, see
    `morph_net.keras.lead`): a gate alive when the rescue started stays
    alive (its mask and probability grow with its log-odds), a dead one
    can still come back (the data loss moves log-odds up freely), and the
    rest of the network trains as before. Released when the cost is back
    above the target.
    """
    if not self.controller.rescue_multiplier:
      self._floors = None
      return
    variables = self.lead_variables
    current = [variable.numpy() for variable in variables]
    if self._floors is None:
      self._floors = current
      return
    for variable, value, floor in zip(variables, current, self._floors):
      if np.any(value < floor):
        variable.assign(np.maximum(value, floor))

  def on_epoch_end(self, epoch, logs=None):
    self._annotate(logs)
