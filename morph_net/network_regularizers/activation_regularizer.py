"""Network regularizers that target activation count (conv/matmul outputs)."""

from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer


class GammaActivationRegularizer(resource_regularizer.GammaRegularizer):
  """Activation count regularizer whose sources are batch norm gammas."""
  resource_function = staticmethod(resource_function.activation_count_function)
  regularizer_name = 'GammaActivationCount'
  cost_name_ = 'ActivationCount'


class GroupLassoActivationRegularizer(
    resource_regularizer.GroupLassoRegularizer):
  """Activation count regularizer whose sources are conv/matmul weights."""
  resource_function = staticmethod(resource_function.activation_count_function)
  regularizer_name = 'GroupLassoActivationCount'
  cost_name_ = 'ActivationCount'
