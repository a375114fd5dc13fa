"""Keras bridge: MorphNet regularizers for Keras 3 (and tf_keras) models.

Public API:
  TracedModel: a model traced once (graph, boundaries, op -> layer map).
  ModelRegularizer: the term, cost and alive counts of a traced model.
  StructureCost: the cost of the model rebuilt with any structure.
  StructureExportCallback: writes learned_structure/alive_<step> files.
  CostSummaryCallback: TensorBoard scalars of the cost and alive counts.
  CostTargetCallback: adapts the strength in `fit` so the cost meets a
    budget; CostTargetController: the same for custom training loops.
  is_chief: whether this process writes files under a multi-worker strategy.
  MorphNetLoss, MorphNetMetric: the serializable loss and metrics that
    `ModelRegularizer.wrap_loss` and `.metrics()` return; importing this
    package registers them, so a model compiled with them loads with
    `keras.models.load_model`.
Expansion to a target cost: `morph_net.keras.expansion`.

On a Keras backend other than TensorFlow (KERAS_BACKEND=jax or torch),
importing this package does not import TensorFlow: `ModelRegularizer` is
the layer-level engine (`layer_regularizer.LayerRegularizer`, same API,
Gamma, GroupLasso and LogisticSigmoid; FLOPs and model size),
`StructureCost` its structure cost
(`layer_structure_cost.LayerStructureCost`), `MorphNetLoss` and
`MorphNetMetric` its loss and metrics (`LayerMorphNetLoss`,
`LayerMorphNetMetric`); `StructureExportCallback`, `is_chief`,
`CostTargetCallback` and `CostTargetController` work with it, and the
names that need the TensorFlow graph engine (`TracedModel`,
`CostSummaryCallback`) raise `morph_net.errors.MissingDependencyError`
when imported.
"""

import keras as _keras

from morph_net import errors as _errors

__all__ = ['TracedModel', 'ModelRegularizer', 'StructureCost',
           'StructureExportCallback', 'CostSummaryCallback',
           'CostTargetCallback', 'CostTargetController', 'MorphNetLoss',
           'MorphNetMetric', 'is_chief']

if _keras.backend.backend() != 'tensorflow':
  # The layer-level engine; the other names raise on access (see the
  # module docstring).
  # pylint: disable=g-import-not-at-top,line-too-long
  from morph_net.keras.callbacks import StructureExportCallback
  from morph_net.keras.callbacks import is_chief
  from morph_net.keras.cost_target import CostTargetCallback
  from morph_net.keras.cost_target import CostTargetController
  from morph_net.keras.layer_regularizer import LayerMorphNetLoss as MorphNetLoss
  from morph_net.keras.layer_regularizer import LayerMorphNetMetric as MorphNetMetric
  from morph_net.keras.layer_regularizer import LayerRegularizer as ModelRegularizer
  from morph_net.keras.layer_structure_cost import LayerStructureCost as StructureCost
  # pylint: enable=g-import-not-at-top,line-too-long

  _GRAPH_ENGINE_ONLY = frozenset(['TracedModel', 'CostSummaryCallback'])

  def __getattr__(name):
    if name in _GRAPH_ENGINE_ONLY:
      raise _errors.MissingDependencyError(
          'morph_net.keras.%s needs the TensorFlow graph engine, and the '
          'Keras backend is %r. On this backend use '
          'morph_net.keras.ModelRegularizer (the layer-level engine) and '
          'morph_net.surgery.rebuild; or set KERAS_BACKEND=tensorflow (with '
          'TensorFlow installed) for %s.' % (name, _keras.backend.backend(),
                                             name))
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
else:
  # pylint: disable=g-import-not-at-top
  from morph_net.keras.callbacks import CostSummaryCallback
  from morph_net.keras.callbacks import StructureExportCallback
  from morph_net.keras.callbacks import is_chief
  from morph_net.keras.cost_target import CostTargetCallback
  from morph_net.keras.cost_target import CostTargetController
  from morph_net.keras.losses import MorphNetLoss
  from morph_net.keras.metrics import MorphNetMetric
  from morph_net.keras.model_regularizer import ModelRegularizer
  from morph_net.keras.structure_cost import StructureCost
  from morph_net.keras.tracing import TracedModel
  # pylint: enable=g-import-not-at-top
