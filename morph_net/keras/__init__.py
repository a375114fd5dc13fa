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
"""

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

__all__ = ['TracedModel', 'ModelRegularizer', 'StructureCost',
           'StructureExportCallback', 'CostSummaryCallback',
           'CostTargetCallback', 'CostTargetController', 'MorphNetLoss',
           'MorphNetMetric', 'is_chief']
