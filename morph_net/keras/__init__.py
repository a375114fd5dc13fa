"""Keras bridge: MorphNet regularizers for Keras 3 (and tf_keras) models.

Public API:
  ModelRegularizer: traces a model and gives the term, cost, alive counts.
  StructureExportCallback: writes learned_structure/alive_<step> files.
  CostSummaryCallback: TensorBoard scalars of the cost and alive counts.
"""

from morph_net.keras.callbacks import CostSummaryCallback
from morph_net.keras.callbacks import StructureExportCallback
from morph_net.keras.model_regularizer import ModelRegularizer

__all__ = ['ModelRegularizer', 'StructureExportCallback',
           'CostSummaryCallback']
