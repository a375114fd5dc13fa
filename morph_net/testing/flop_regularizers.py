"""The two FLOP regularizers tests build most, in one place.

`gamma_flops` reads batch-norm scales, `group_lasso_flops` kernel filters;
both wrap `morph_net.keras.ModelRegularizer` on a built Keras model (the
graph engine on TensorFlow).
"""

from morph_net.keras import model_regularizer
from morph_net.network_regularizers import flop_regularizer

__all__ = ['gamma_flops', 'group_lasso_flops']


def gamma_flops(model, threshold: float = 1e-3):
  """A `GammaFlopsRegularizer` ModelRegularizer with `gamma_threshold`."""
  return model_regularizer.ModelRegularizer(
      model, flop_regularizer.GammaFlopsRegularizer,
      gamma_threshold=threshold)


def group_lasso_flops(model, threshold: float = 1e-3):
  """A `GroupLassoFlopsRegularizer` ModelRegularizer with `threshold`."""
  return model_regularizer.ModelRegularizer(
      model, flop_regularizer.GroupLassoFlopsRegularizer,
      threshold=threshold)
