"""Network regularizers that target model size (weights of conv/matmul ops)."""

from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer


class GammaModelSizeRegularizer(resource_regularizer.GammaRegularizer):
  """Model size regularizer whose sources are batch norm gammas."""
  resource_function = staticmethod(resource_function.model_size_function)
  regularizer_name = 'GammaModelSize'
  cost_name_ = 'ModelSize'


class GroupLassoModelSizeRegularizer(
    resource_regularizer.GroupLassoRegularizer):
  """Model size regularizer whose sources are conv/matmul weights."""
  resource_function = staticmethod(resource_function.model_size_function)
  regularizer_name = 'GroupLassoModelSize'
  cost_name_ = 'ModelSize'
