"""OutputNonPassthroughOpHandler: the output is a new channel space.

Convolutions and matmuls under Gamma regularizers (their output channels are
grouped with the batch norm that follows, by that batch norm's handler),
Transpose, ExpandDims, Einsum.
"""

from morph_net.op_handlers import leaf_op_handler


class OutputNonPassthroughOpHandler(leaf_op_handler.LeafOpHandler):
  """Does not group output channels with input channels."""
