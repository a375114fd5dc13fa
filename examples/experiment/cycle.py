"""The stages of the MorphNet cycle and of the width-multiplier baseline.

Run directory layout (`Experiment.path(...)`):

  structures/original.json  widths of the original network
  structures/shrunk.json    learned by `shrink` (alive channels)
  structures/expanded.json  `expand`: shrunk x one multiplier, original cost
  structures/wm_<m>.json    `baseline`: original x uniform multiplier m
  shrink/                   TensorBoard logs, learned_structure/alive_<step>,
                            metrics.json of the regularized training
  models/<name>/            TensorBoard logs, model.keras, metrics.json of each
                            retrained network (morphnet_expanded,
                            morphnet_shrunk, wm_<m>)
  metrics.json              `evaluate`: FLOPs, parameters, test accuracy
  structure.png             original vs shrunk (and structure_expanded.png)
  operative_config*.gin, timings.json; the report is written by `report`.
"""

import json
import os
import sys
import time
from typing import Dict, Optional, Sequence

import gin
import keras

from morph_net import keras as morph_keras
from morph_net.keras import expansion
from morph_net.network_regularizers import registry
from morph_net.network_regularizers import resource_function
from morph_net.structure import atomic_file
from morph_net.structure import structure_files
from morph_net.structure import structure_plot
from morph_net.structure import width_multiplier
from morph_net.surgery import channel_model
from morph_net.surgery import plan as plan_lib
from morph_net.surgery import rebuild

from examples.experiment import data as data_lib
from examples.experiment import models
from examples.experiment import training

__all__ = ['Experiment', 'resource_of', 'shrink_stage', 'expand_stage',
           'retrain_stage', 'baseline_stage', 'evaluate_stage']


def resource_of(resource: str = 'flops', hardware: str = 'V100',
                batch_size: int = 1):
  """The resource function named `resource`, for StructureCost.

  Args:
    resource: 'flops', 'model_size', 'latency' or 'activations'.
    hardware: the device of 'latency'.
    batch_size: the batch size of 'latency'.

  Returns:
    A resource function (latency bound to `hardware` and `batch_size`).

  Raises:
    ValueError: for another name.
  """
  if resource == 'flops':
    return resource_function.flop_function
  if resource == 'model_size':
    return resource_function.model_size_function
  if resource == 'activations':
    return resource_function.activation_count_function
  if resource == 'latency':
    return resource_function.latency_function_factory(hardware, batch_size)
  raise ValueError("Invalid value for argument `resource`. Expected one of "
                   "'flops', 'model_size', 'latency', 'activations'. "
                   'Received: resource=%r' % resource)


def _read_json(path):
  if not os.path.exists(path):
    raise FileNotFoundError(
        '%s does not exist: run the stage that writes it first (see '
        '--stage).' % path)
  with open(path) as f:
    return json.load(f)


def wm_name(multiplier: float) -> str:
  return 'wm_%.2f' % multiplier


@gin.configurable
class Experiment(object):
  """Shared state of the stages: run directory, data, the original model.

  Args:
    run_dir: the run directory.
    seed: seed of every model initialisation and training run.
  """

  def __init__(self, run_dir: str, seed: int = 0):
    self.run_dir = run_dir
    self.seed = seed
    self._data = None
    os.makedirs(run_dir, exist_ok=True)

  def path(self, *parts) -> str:
    return os.path.join(self.run_dir, *parts)

  @property
  def data(self):
    if self._data is None:
      self._data = data_lib.load_data()
    return self._data

  def build(self, gated: bool = False):
    keras.utils.set_random_seed(self.seed)
    return models.build_model(input_shape=data_lib.input_shape(self.data),
                              num_classes=data_lib.num_classes(self.data),
                              gated=gated)

  def original_model(self):
    """The plain (ungated) original network, built once per stage."""
    return self.build(gated=False)

  def original_structure(self, model) -> Dict[str, int]:
    """{layer: width} of the width-taking layers that may change."""
    return channel_model.analyze(model).original_structure()

  def structure(self, name: str) -> Dict[str, int]:
    """Reads structures/<name>.json.

    Raises:
      FileNotFoundError: naming the stage that writes the file.
    """
    path = self.path('structures', name + '.json')
    if not os.path.exists(path):
      writer = {'shrunk': 'shrink', 'original': 'shrink',
                'expanded': 'expand'}.get(name, 'baseline')
      raise FileNotFoundError(
          '%s does not exist: run the stage that writes it first '
          '(--stage=%s).' % (path, writer))
    return structure_files.read_structure(path)

  def write_structure(self, name: str, structure: Dict[str, int]) -> str:
    path = self.path('structures', name + '.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    structure_files.write_structure(structure, path)
    return path


@gin.configurable
def shrink_stage(exp: Experiment, regularizer: str = 'GammaFlopsRegularizer',
                 threshold: Optional[float] = 1e-2,
                 regularizer_kwargs: Optional[Dict] = None,
                 strength: Optional[float] = None,
                 strength_multiplier: float = 1.0,
                 gated: bool = False) -> Dict:
  """Trains the network with the MorphNet regularizer; exports the structure.

  Args:
    exp: the experiment.
    regularizer: class name of a network regularizer.
    threshold: its alive threshold (gamma_threshold, threshold or
      alive_threshold, whichever it takes).
    regularizer_kwargs: its other arguments (e.g. {'hardware': 'V100'}).
    strength: absolute strength; None uses strength_multiplier.
    strength_multiplier: strength = multiplier / initial cost.
    gated: train the gated variant of the model family (LogisticSigmoid).

  Returns:
    The stage's metrics.
  """
  cls = registry.get_regularizer_class(regularizer)
  model = exp.build(gated=gated)
  kwargs = dict(registry.threshold_kwargs(regularizer, threshold))
  kwargs.update(regularizer_kwargs or {})
  reg = morph_keras.ModelRegularizer(model, cls, **kwargs)
  if strength is not None:
    reg.set_strength(strength)
  else:
    reg.set_strength_relative_to_cost(strength_multiplier)
  initial_cost = reg.initial_cost
  print('shrink: %s, initial %s = %.6g, strength = %.4g' % (
      reg.name, reg.cost_name, initial_cost, float(reg.strength.numpy())))
  sys.stdout.flush()
  with gin.config_scope('shrink'):
    result = training.train(model, exp.data, exp.path('shrink'),
                            regularizer=reg, label='shrink')
  # The gated model has gate layers; its structure is costed and applied on
  # the plain model. A plain model shares the regularizer's trace.
  flops = morph_keras.StructureCost(
      exp.original_model() if gated else reg, resource_function.flop_function)
  original = flops.channels.original_structure()
  learned = reg.alive_counts()
  shrunk = plan_lib.rebuildable_structure(flops.channels, {
      name: int(learned.get(name, width)) for name, width in original.items()})
  exp.write_structure('original', original)
  exp.write_structure('shrunk', shrunk)
  result.update(
      regularizer=reg.name, cost_name=reg.cost_name,
      initial_cost=initial_cost, final_cost=float(reg.cost()),
      strength=float(reg.strength.numpy()),
      original_flops=flops.cost(original), shrunk_flops=flops.cost(shrunk),
      kept_fraction={name: shrunk[name] / float(original[name])
                     for name in original})
  atomic_file.write_json_atomically(result, exp.path('shrink', 'metrics.json'))
  structure_plot.plot_structures(
      original, shrunk, exp.path('structure.png'),
      title='%s: learned widths' % reg.name, labels=('original', 'shrunk'))
  print('shrink: %s %.6g -> %.6g; FLOPs %.4g -> %.4g; structure %s' % (
      reg.cost_name, initial_cost, result['final_cost'],
      result['original_flops'], result['shrunk_flops'],
      exp.path('structures', 'shrunk.json')))
  return result


@gin.configurable
def expand_stage(exp: Experiment, resource: str = 'flops',
                 hardware: str = 'V100', batch_size: int = 1,
                 target_cost: Optional[float] = None, round_to: int = 1,
                 tolerance: float = 0.01) -> Dict:
  """Widens the shrunk structure by one multiplier up to the original cost.

  Args:
    exp: the experiment.
    resource: cost measured ('flops', 'model_size', 'latency',
      'activations'), normally the shrink regularizer's.
    hardware: for resource='latency'.
    batch_size: for resource='latency'.
    target_cost: the cost to reach (None: the original network's).
    round_to: widths are multiples of this.
    tolerance: relative distance to the target accepted.

  Returns:
    The stage's metrics.
  """
  shrunk = exp.structure('shrunk')
  coster = morph_keras.StructureCost(
      exp.original_model(), resource_of(resource, hardware, batch_size))
  target = float(target_cost) if target_cost else coster.cost(
      exp.structure('original'))
  expanded, multiplier, cost = expansion.expand_to_cost(
      coster, shrunk, target, round_to=round_to, tolerance=tolerance)
  exp.write_structure('expanded', expanded)
  structure_plot.plot_structures(
      exp.structure('original'), expanded,
      exp.path('structure_expanded.png'),
      title='Expanded x%.3f to the original %s' % (multiplier, resource),
      labels=('original', 'expanded'))
  result = {'resource': resource, 'target_cost': target,
            'shrunk_cost': coster.cost(shrunk), 'expanded_cost': cost,
            'multiplier': multiplier}
  atomic_file.write_json_atomically(result, exp.path('structures', 'expand_metrics.json'))
  print('expand: %s %.6g -> %.6g (target %.6g) with multiplier %.4f' % (
      resource, result['shrunk_cost'], cost, target, multiplier))
  return result


def _train_structure(exp: Experiment, name: str, structure: Dict[str, int],
                     extra: Optional[Dict] = None) -> Dict:
  """Trains `structure` from scratch without regularizer; saves the model."""
  plain = exp.original_model()
  keras.utils.set_random_seed(exp.seed)
  model = rebuild.rebuild(plain, structure)
  out = exp.path('models', name)
  print('%s: %d parameters, widths %s' % (
      name, model.count_params(), json.dumps(structure, sort_keys=True)))
  sys.stdout.flush()
  with gin.config_scope('retrain'):
    result = training.train(model, exp.data, out, label=name)
  model.save(os.path.join(out, 'model.keras'))
  result['structure'] = structure
  result.update(extra or {})
  atomic_file.write_json_atomically(result, os.path.join(out, 'metrics.json'))
  return result


@gin.configurable
def retrain_stage(exp: Experiment,
                  structures: Sequence[str] = ('expanded', 'shrunk')) -> Dict:
  """Retrains the learned structures from scratch, without the regularizer."""
  return {name: _train_structure(exp, 'morphnet_' + name,
                                 exp.structure(name), {'kind': 'morphnet'})
          for name in structures}


@gin.configurable
def baseline_stage(exp: Experiment,
                   multipliers: Sequence[float] = (0.5, 0.75, 1.0),
                   round_to: int = 1) -> Dict:
  """Trains the original network scaled by uniform width multipliers."""
  plain = exp.original_model()
  original = exp.original_structure(plain)
  exp.write_structure('original', original)
  results = {}
  for m in multipliers:
    structure = width_multiplier.multiply(original, m, round_to)
    exp.write_structure(wm_name(m), structure)
    results[wm_name(m)] = _train_structure(
        exp, wm_name(m), structure, {'kind': 'width_multiplier',
                                     'multiplier': m})
  return results


@gin.configurable
def evaluate_stage(exp: Experiment) -> Dict:
  """Evaluates every trained model; writes metrics.json (FLOPs, params, acc)."""
  flops = morph_keras.StructureCost(exp.original_model())
  size = morph_keras.StructureCost(flops.traced,
                                   resource_of('model_size'))
  models_dir = exp.path('models')
  if not os.path.isdir(models_dir):
    raise FileNotFoundError('%s does not exist: run --stage=retrain and '
                            '--stage=baseline first.' % models_dir)
  results = {}
  for name in sorted(os.listdir(models_dir)):
    model_path = os.path.join(models_dir, name, 'model.keras')
    if not os.path.exists(model_path):
      continue
    trained = _read_json(os.path.join(models_dir, name, 'metrics.json'))
    model = keras.models.load_model(model_path, compile=False)
    values = training.evaluate(model, exp.data)
    structure = trained['structure']
    results[name] = {
        'kind': trained.get('kind'),
        'multiplier': trained.get('multiplier'),
        'flops': flops.cost(structure),
        'weights': size.cost(structure),
        'params': int(model.count_params()),
        'test_accuracy': values['test_accuracy'],
        'test_loss': values['test_loss'],
        'train_seconds': trained.get('train_seconds'),
        'epochs': trained.get('epochs'),
    }
    print('evaluate %-20s FLOPs %.4g  params %d  accuracy %.4f' % (
        name, results[name]['flops'], results[name]['params'],
        values['test_accuracy']))
  metrics = {'seed': exp.seed, 'test_examples': int(len(exp.data.y_test)),
             'train_examples': int(len(exp.data.y_train)),
             'models': results}
  atomic_file.write_json_atomically(metrics, exp.path('metrics.json'))
  return metrics


def record_time(exp: Experiment, stage: str, seconds: float) -> None:
  path = exp.path('timings.json')
  timings = _read_json(path) if os.path.exists(path) else {}
  timings[stage] = round(seconds, 1)
  atomic_file.write_json_atomically(timings, path)


def timed(exp: Experiment, stage: str, fn):
  start = time.time()
  print('=== stage %s ===' % stage)
  sys.stdout.flush()
  result = fn(exp)
  record_time(exp, stage, time.time() - start)
  print('=== stage %s done in %.0fs ===' % (stage, time.time() - start))
  sys.stdout.flush()
  return result
