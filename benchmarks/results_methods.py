"""The methods and stages of `results_table.py`, one cell at a time.

A `Budget` holds what every cell trains with; `Bench` holds one network's
data and its FLOP coster and runs a stage of a (method, target, seed):

- `original`: the full network trained from scratch (uniform's weights).
- `prune`: the method's structure at `target` of the FLOPs. MorphNet Gamma
  (`gamma`) and LogisticSigmoid / FiGS (`figs`, on the gated network) train
  with `CostTargetCallback`; Network Slimming (`l1`) trains with unweighted
  L1 on every batch-norm gamma at a fixed strength; all three then take the
  structure a global threshold on the regularizer's per-channel values gives
  at the target (`fit_structure`). `uniform` solves one width multiplier.
- `scratch`: that structure trained from scratch.
- `finetune`: the pruned network rebuilt with its weights (the kept
  channels are the method's, removed channels' constants folded) and
  fine-tuned; uniform keeps the largest-|gamma| channels of `original`;
  FiGS's kept gates are opened (`_open_gates`).
- `expand1`, `expand2`: one and two shrink/expand cycles: the structure
  widened by one multiplier to the original FLOPs and trained from scratch;
  `reprune` shrinks the expanded network again for the second cycle.
  Uniform's expanded network is the original one.

Every structure is costed by the original network's `StructureCost` and
checked to be within `Budget.tolerance` of its FLOPs target
(`check_equal_cost`).
"""

import dataclasses
import math
import time
from typing import Dict, Optional, Tuple

import numpy as np

from morph_net import errors

__all__ = ['Budget', 'Bench', 'METHODS', 'STAGES', 'UnequalCostError',
           'check_equal_cost', 'fit_structure', 'load_data']

METHODS = ('gamma', 'figs', 'uniform', 'l1')
# Stages in the order they depend on each other.
STAGES = ('original', 'prune', 'scratch', 'finetune', 'expand1', 'reprune',
          'expand2')
# XLA off: on this 2-core CPU it made an epoch of these networks 1.3x (VGG),
# 1.8x (ResNet) and 4.6x (MobileNetV2) slower than TensorFlow's graph mode
# (Keras 3's default, jit_compile='auto', turns it on).
JIT_COMPILE = False
_REGULARIZERS = {'gamma': 'GammaFlopsRegularizer',
                 'figs': 'LogisticSigmoidFlopsRegularizer',
                 'l1': 'GammaFlopsRegularizer'}  # l1: its values and costs.


class UnequalCostError(errors.Error, AssertionError):
  """A structure's FLOPs are further than the tolerance from its target."""


@dataclasses.dataclass
class Budget:
  """What every cell trains with.

  Attributes:
    train_examples: training images (a fixed subset).
    test_examples: test images evaluated (the first ones).
    batch_size: batch size.
    prune_epochs: epochs at most of MorphNet's regularized trainings
      (prune, reprune): they stop once the cost has been within
      `target_tolerance` of the target at `hold` consecutive epoch ends
      (`cost_target.train_to_target`), as a user of `CostTargetCallback`
      would; the epochs taken are recorded in the cell.
    hold: consecutive epoch ends at the target that end a MorphNet prune.
    target_tolerance: relative distance to the target counted as reached.
    l1_epochs: epochs of Network Slimming's regularized training (fixed
      strength, no target to reach).
    train_epochs: epochs of the other trainings (original, scratch,
      finetune, expand).
    learning_rate: Adam learning rate (constant while pruning, cosine
      decay in the other trainings).
    finetune_learning_rate: peak learning rate of fine-tuning.
    l1_strength: Network Slimming's strength on sum(|gamma|).
    gamma_threshold: alive threshold on |gamma| (gamma): two Adam steps
      (2 x 5e-3), as `cost_target.py` and the main job.
    gate_threshold: alive threshold on the gate probability (figs).
    tolerance: the largest relative FLOPs distance to a target.
  """
  train_examples: int = 4096
  test_examples: int = 2000
  batch_size: int = 64
  prune_epochs: int = 20
  hold: int = 2
  target_tolerance: float = 0.03
  l1_epochs: int = 10
  train_epochs: int = 2
  learning_rate: float = 5e-3
  finetune_learning_rate: float = 1e-3
  l1_strength: float = 1e-4
  gamma_threshold: float = 0.01
  gate_threshold: float = 0.1
  tolerance: float = 0.01


def check_equal_cost(name: str, cost: float, target: float,
                     tolerance: float) -> float:
  """The relative distance of `cost` to `target`, checked.

  Raises:
    UnequalCostError: naming the cell when it is above `tolerance`.
  """
  distance = cost / target - 1.0
  if not abs(distance) <= tolerance + 1e-12:  # 99 / 100 - 1 is -0.01000...1.
    raise UnequalCostError(
        'Cell %s: FLOPs %.6g are %+.2f%% from the target %.6g, beyond the '
        'tolerance of %g%%; the methods are compared at equal FLOPs only. '
        'The structure fit could not come closer (see the log for why); '
        'delete the cell\'s JSON and rerun it, or pass a larger '
        '--tolerance.' % (name, cost, 100 * distance, target,
                          100 * tolerance))
  return distance


def load_data(dataset: str, network: str, budget: Budget, data_dir=None):
  """The images for `network`: 32x32x3 for MobileNetV2, else as stored.

  Args:
    dataset: 'fashion_mnist' (offline IDX files first) or a
      tensorflow-datasets name such as 'cifar10'.
    network: one of `networks.ARCHITECTURES`.
    budget: its train and test example counts.
    data_dir: the Fashion-MNIST directory (default: the examples').

  Returns:
    An `examples.experiment.data.Data`.
  """
  from examples import datasets  # pylint: disable=g-import-not-at-top
  from examples.experiment import data as data_lib  # pylint: disable=g-import-not-at-top
  resize = network == 'mobilenet_v2'
  return data_lib.load_data(
      dataset, train_examples=budget.train_examples,
      test_examples=budget.test_examples, image_size=32 if resize else None,
      channels=3 if resize else None,
      data_dir=data_dir or datasets.FASHION_MNIST_DIR)


def _top_masks(scores: Dict[str, np.ndarray], structure: Dict[str, int]
               ) -> Dict[str, np.ndarray]:
  """Per layer, the `structure[name]` channels of the highest score."""
  masks = {}
  for name, values in scores.items():
    keep = structure.get(name, len(values))
    mask = np.zeros(len(values), bool)
    mask[np.argsort(-values, kind='stable')[:keep]] = True
    masks[name] = mask
  return masks


def fit_structure(regularizer, coster, target: float, tolerance: float
                  ) -> Tuple[Dict[str, int], Dict[str, np.ndarray], Dict]:
  """The structure a global threshold on the channel values gives at `target`.

  The channels above a threshold t on `regularizer.regularization_vectors()`
  stay (at least one in each connecting layer, as `min_channels=1`); t is
  the one whose structure costs closest to `target`. When no threshold comes
  within `tolerance` (one channel moves the cost too much), the structure
  closest structure above it is narrowed there by `expansion.expand_to_cost`
  (one multiplier, then single groups); the kept channels are the
  highest-valued ones.

  Args:
    regularizer: a `ModelRegularizer` of the trained network.
    coster: a `StructureCost` of that network.
    target: the FLOPs to reach.
    tolerance: relative distance accepted.

  Returns:
    (structure, alive masks for `rebuild`, {'threshold', 'threshold_flops',
    'multiplier'}).
  """
  from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import plan as plan_lib  # pylint: disable=g-import-not-at-top
  scores = {name: np.asarray(v, np.float64)
            for name, v in regularizer.regularization_vectors().items()}
  original = coster.channels.original_structure()
  connecting = set(regularizer.connecting_layers)

  def structure_at(threshold):
    counts = {}
    for name, width in original.items():
      if name not in scores:
        counts[name] = width
        continue
      count = int(np.sum(scores[name] > threshold))
      counts[name] = max(count, 1) if name in connecting else count
    return plan_lib.rebuildable_structure(coster.channels, counts)

  values = np.unique(np.concatenate([v[np.isfinite(v)] for v in
                                     scores.values()] + [[-np.inf]]))
  lo, hi = 0, len(values) - 1  # cost(values[lo]) >= target > cost(hi).
  if coster.cost(structure_at(values[hi])) >= target:
    lo = hi
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if coster.cost(structure_at(values[mid])) >= target:
      lo = mid
    else:
      hi = mid
  candidates = [(abs(coster.cost(structure_at(values[i])) - target), i)
                for i in {lo, hi}]
  threshold = float(values[min(candidates)[1]])
  structure = structure_at(threshold)
  info = {'threshold': threshold, 'threshold_flops': coster.cost(structure),
          'multiplier': None}
  if abs(info['threshold_flops'] / target - 1) > tolerance:
    # Narrow the closest structure above the target (vanished groups of a
    # structure below it would stay vanished while the others widen).
    fitted, info['multiplier'], _ = expansion.expand_to_cost(
        coster, structure_at(values[lo]), target, tolerance=tolerance)
    # Single group moves may widen a group; never past the network's width.
    structure = {name: min(width, original.get(name, width))
                 for name, width in fitted.items()}
  return structure, _top_masks(scores, structure), info


class Bench(object):
  """One network's data, coster and stages.

  Args:
    network: one of `networks.ARCHITECTURES`.
    data: its `Data`.
    budget: the `Budget`.
  """

  def __init__(self, network: str, data, budget: Budget):
    from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
    self.network = network
    self.data = data
    self.budget = budget
    self.coster = morph_keras.StructureCost(self.build(0))
    self.original_flops = float(self.coster.cost({}))

  # ------------------------------------------------------------ helpers.

  def build(self, seed: int, gated: bool = False,
            structure: Optional[Dict[str, int]] = None):
    """The network, seeded; narrowed or widened to `structure` if given."""
    import keras  # pylint: disable=g-import-not-at-top
    from benchmarks import networks  # pylint: disable=g-import-not-at-top
    from examples.experiment import data as data_lib  # pylint: disable=g-import-not-at-top
    from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(seed)
    model = networks.build_model(
        self.network, data_lib.input_shape(self.data), gated,
        data_lib.num_classes(self.data))
    if structure is not None:
      keras.utils.set_random_seed(seed)
      model = rebuild.rebuild(model, structure)
    return model

  def flops(self, structure: Dict[str, int]) -> float:
    return float(self.coster.cost(structure))

  def fit(self, model, epochs: int, learning_rate: float, schedule: str,
          loss=None, callbacks=()) -> float:
    """Trains `model`; returns the seconds."""
    import keras  # pylint: disable=g-import-not-at-top
    from examples.experiment import training  # pylint: disable=g-import-not-at-top
    data, b = self.data, self.budget
    steps = epochs * math.ceil(len(data.x_train) / b.batch_size)
    model.compile(
        optimizer=training.make_optimizer(steps, learning_rate, schedule),
        loss=loss or keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), jit_compile=JIT_COMPILE)
    start = time.time()
    model.fit(data.x_train, data.y_train, batch_size=b.batch_size,
              epochs=epochs, shuffle=True, verbose=0,
              callbacks=list(callbacks))
    return time.time() - start

  def accuracy(self, model) -> float:
    """Test accuracy after re-estimating the batch-norm statistics."""
    from benchmarks import cost_target  # pylint: disable=g-import-not-at-top
    d = self.data
    return cost_target._accuracy(model, d.x_train, d.x_test, d.y_test)  # pylint: disable=protected-access

  def train_structure(self, seed: int, structure, epochs=None) -> Dict:
    """`structure` from scratch: {'flops', 'accuracy', 'train_seconds'}."""
    model = self.build(seed, structure=structure)
    seconds = self.fit(model, epochs or self.budget.train_epochs,
                       self.budget.learning_rate, 'cosine')
    return {'flops': self.flops(structure), 'accuracy': self.accuracy(model),
            'train_seconds': seconds, 'structure': structure}

  # ------------------------------------------------------------- stages.

  def original(self, seed: int, weights_path: str) -> Dict:
    """The full network from scratch; its weights are saved."""
    model = self.build(seed)
    seconds = self.fit(model, self.budget.train_epochs,
                       self.budget.learning_rate, 'cosine')
    _save_weights(model, weights_path)
    return {'flops': self.original_flops, 'accuracy': self.accuracy(model),
            'train_seconds': seconds}

  def uniform(self, target: float) -> Dict:
    """One width multiplier at `target` of the FLOPs (rounded, adjusted)."""
    from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
    structure, multiplier, cost = expansion.expand_to_cost(
        self.coster, self.coster.channels.original_structure(),
        target * self.original_flops, tolerance=self.budget.tolerance)
    return {'structure': structure, 'multiplier': multiplier,
            'flops': float(cost), 'train_seconds': 0.0}

  def prune(self, method: str, target: float, seed: int, weights_path: str,
            base: Optional[Dict[str, int]] = None) -> Dict:
    """Trains `method` to `target` of the original FLOPs; fits the structure.

    Args:
      method: 'gamma', 'figs' or 'l1'.
      target: fraction of the original network's FLOPs.
      seed: the seed.
      weights_path: where the trained weights go (for `finetune`).
      base: the structure the training starts from (None: the original
        network; `reprune` passes the expanded one).

    Returns:
      The cell's record: the structure and masks, its FLOPs, the trained
      network's own cost (gamma, figs) and the fit's threshold.
    """
    from morph_net import keras as morph_keras  # pylint: disable=g-import-not-at-top
    from morph_net.network_regularizers import registry  # pylint: disable=g-import-not-at-top
    b = self.budget
    model = self.build(seed, gated=method == 'figs', structure=base)
    threshold = b.gate_threshold if method == 'figs' else b.gamma_threshold
    reg = morph_keras.ModelRegularizer(
        model, _REGULARIZERS[method],
        **registry.threshold_kwargs(_REGULARIZERS[method], threshold))
    target_cost = target * self.original_flops
    if method == 'l1':
      seconds = self.fit(model, b.l1_epochs, b.learning_rate, 'constant',
                         loss=_GammaL1Loss(model, b.l1_strength))
      trained = {'epochs': b.l1_epochs, 'reached': None}
    else:
      from benchmarks import cost_target  # pylint: disable=g-import-not-at-top
      d = self.data
      trained = cost_target.train_to_target(
          model, reg, target_cost, d.x_train, d.y_train, b.batch_size,
          b.learning_rate, b.prune_epochs, b.target_tolerance, b.hold,
          key='%s %s %g seed %d' % (self.network, method, target, seed),
          jit_compile=JIT_COMPILE)
      seconds = trained['train_seconds']
    _save_weights(model, weights_path)
    structure, masks, info = fit_structure(
        reg, morph_keras.StructureCost(reg), target_cost, b.tolerance)
    record = {'structure': structure, 'flops': self.flops(structure),
              'masks': {k: v.astype(int).tolist() for k, v in masks.items()},
              'train_seconds': seconds, 'trained_cost': float(reg.cost()),
              'initial_cost': float(reg.initial_cost),
              'prune_epochs': trained['epochs'],
              'reached': trained['reached']}
    record.update(info)
    return record

  def finetune(self, method: str, seed: int, prune: Dict, weights_path: str
               ) -> Dict:
    """The pruned network rebuilt with its weights, then fine-tuned."""
    from morph_net.surgery import rebuild  # pylint: disable=g-import-not-at-top
    model = self.build(seed, gated=method == 'figs')
    model.load_weights(weights_path)
    masks = prune.get('masks')
    small = rebuild.rebuild(
        model, prune['structure'], transfer_weights=True,
        alive_masks=masks and {k: np.asarray(v, bool)
                               for k, v in masks.items()})
    if method == 'figs':
      _open_gates(small)
    before = self.accuracy(small)
    seconds = self.fit(small, self.budget.train_epochs,
                       self.budget.finetune_learning_rate, 'cosine')
    return {'flops': self.flops(prune['structure']),
            'accuracy_before_finetune': before,
            'accuracy': self.accuracy(small), 'train_seconds': seconds}

  def expand(self, seed: int, structure: Dict[str, int]) -> Dict:
    """`structure` widened to the original FLOPs, trained from scratch."""
    from morph_net.keras import expansion  # pylint: disable=g-import-not-at-top
    expanded, multiplier, _ = expansion.expand_to_cost(
        self.coster, structure, self.original_flops,
        tolerance=self.budget.tolerance)
    record = self.train_structure(seed, expanded)
    record['multiplier'] = multiplier
    return record


def _open_gates(model) -> int:
  """Opens every LogisticSigmoidGating of `model`, nested ones too; returns how many.

  A kept FiGS channel is one whose inference mask is 1 (log-odds > 0), but
  in training mode its gate still samples with probability
  sigmoid(log-odds), about 0.5-0.75 after a FiGS shrink (VGG, FLOPs 0.5):
  fine-tuning and the batch-norm statistics' re-estimation would drop a
  third of the kept channels at random, unlike the network the structure
  deploys. A log-odds of 20 (probability 1 - 2e-9) makes every pass, in
  training mode too, the inference network's. (VGG, FLOPs 0.5, seed 0:
  before fine-tuning 80.6% sampled, 85.6% open; after 80.7%, 87.7%.)
  """
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  from morph_net.surgery import nesting  # pylint: disable=g-import-not-at-top
  # Nested models' layers too: MobileNetV2's gates are inside its nested
  # base model, which `model.layers` lists as one layer.
  gates = [layer for layer in nesting.leaf_layers(model)
           if isinstance(layer, activation_gating.LogisticSigmoidGating)]
  for gate in gates:
    gate.log_odds.assign(np.full(gate.log_odds.shape, 20.0, np.float32))
  return len(gates)


def _save_weights(model, path: str) -> None:
  """Saves `model`'s weights to `path` atomically (a cell is whole or none)."""
  from morph_net.structure import atomic_file  # pylint: disable=g-import-not-at-top
  with atomic_file.atomic_path(path) as tmp:
    model.save_weights(tmp)


class _GammaL1Loss(object):
  """Data loss plus `strength` x sum of |gamma| of every batch norm."""

  def __init__(self, model, strength: float):
    import keras  # pylint: disable=g-import-not-at-top
    self._gammas = [v for v in model.trainable_variables
                    if v.path.endswith('/gamma')]
    if not self._gammas:
      raise errors.InvalidArgumentError(
          'Invalid value for argument `model`: model %r has no batch-norm '
          'gamma, so Network Slimming (unweighted L1 on gammas) cannot '
          'prune it. Use a network with scaled batch norms.' % model.name)
    self._strength = float(strength)
    self._data = keras.losses.sparse_categorical_crossentropy
    self.__name__ = 'gamma_l1_loss'

  def __call__(self, y_true, y_pred):
    import keras  # pylint: disable=g-import-not-at-top
    penalty = keras.ops.sum(keras.ops.stack(
        [keras.ops.sum(keras.ops.abs(g)) for g in self._gammas]))
    return self._data(y_true, y_pred, from_logits=True) + (
        self._strength * penalty)
