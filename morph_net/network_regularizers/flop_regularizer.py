"""Network regularizers that target FLOPs (multiply-adds count 2)."""

from morph_net.network_regularizers import resource_function
from morph_net.network_regularizers import resource_regularizer


class GammaFlopsRegularizer(resource_regularizer.GammaRegularizer):
  """FLOP regularizer whose sources are batch norm gammas."""
  resource_function = staticmethod(resource_function.flop_function)
  regularizer_name = 'GammaFlops'
  cost_name_ = 'FLOPs'


class GroupLassoFlopsRegularizer(resource_regularizer.GroupLassoRegularizer):
  """FLOP regularizer whose sources are conv/matmul weights (group lasso)."""
  resource_function = staticmethod(resource_function.flop_function)
  regularizer_name = 'GroupLassoFlops'
  cost_name_ = 'FLOPs'
