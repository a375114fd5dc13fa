"""Which channels of a Keras model the regularizer may push towards zero.

The regularizer's cost must be the cost of the model the user gets from
`rebuild(model, alive_counts())`. Two kinds of channel groups cannot be
narrowed by rebuild, so regularizing them would make the trained cost a cost
no rebuilt model has:

- groups that reach a model output (a classifier keeps its classes; the
  original's users excluded them by hand with `regularizer_blacklist`);
- groups that surgery's channel model freezes (a Dense feeding a `Reshape`,
  the inputs of a layer surgery does not understand, ...).

`excluded_ops(traced)` finds the ops of those groups in the trace; the Keras
bridge passes them to the network regularizer as `regularizer_blacklist`, so
the graph analysis and rebuild agree by construction. Layers frozen for a
reason other than reaching an output are named in one warning.
"""

import logging
import re
from typing import Dict, List, Optional

from morph_net import errors
from morph_net.surgery import channel_model

__all__ = ['ExcludedOps', 'excluded_ops', 'fixed_width_layers',
           'blacklist_regex', 'OUTPUT_REASON']

OUTPUT_REASON = 'its channels reach a model output'


def fixed_width_layers(channels: channel_model.ChannelModel
                       ) -> Dict[str, str]:
  """{layer name: why rebuild cannot narrow its output channels}.

  Every layer of the channel model whose output has a channel group that is frozen or
  reaches a model output is listed (weightless layers too).

  Args:
    channels: the channel model of the traced model.

  Returns:
    The layers and the first reason (frozen reasons before outputs).
  """
  table = channels.table
  output_groups = channels.output_groups()
  fixed = {}
  for name, space in channels.layer_out.items():
    for gid in space.group_ids(table):
      reasons = table.frozen_reasons(gid)
      if reasons:
        fixed[name] = reasons[0]
        break
      if table.find(gid) in output_groups:
        fixed[name] = OUTPUT_REASON
        break
  return fixed


class ExcludedOps(object):
  """Ops of the trace whose channel groups must not be regularized.

  Attributes:
    op_names: names of the excluded ops (sorted).
    layers: {layer name: reason} of the layers whose weight ops
      are excluded.
    warned: the names of `layers` a user would expect to be regularized:
      width-taking layers (conv, dense) whose groups are frozen for a reason
      other than reaching an output.
  """

  def __init__(self, op_names: List[str], layers: Dict[str, str],
               warned: Optional[List[str]] = None):
    self.op_names = sorted(set(op_names))
    self.layers = dict(layers)
    self.warned = sorted(warned or [])

  def blacklist(self) -> List[str]:
    """`regularizer_blacklist` entries excluding exactly these ops."""
    regex = blacklist_regex(self.op_names)
    return [regex] if regex else []

  def warn(self) -> None:
    """One warning naming the `warned` layers and why."""
    frozen = {n: self.layers[n] for n in self.warned}
    if not frozen:
      return
    logging.warning(
        'Rebuild cannot narrow the channels of %d layer(s): %s. MorphNet '
        'does not regularize them and keeps their widths; register a layer rule '
        '(morph_net.surgery.register_layer_rule) for a layer rebuild does '
        'not understand.', len(frozen),
        '; '.join('%r: %s' % item for item in sorted(frozen.items())))


def blacklist_regex(op_names: List[str]) -> Optional[str]:
  """One anchored regex matching exactly `op_names` (None if empty)."""
  if not op_names:
    return None
  return '^(?:%s)$' % '|'.join(re.escape(n) for n in sorted(set(op_names)))


def excluded_ops(traced, keep_output_widths: bool = True) -> ExcludedOps:
  """The ops whose groups the bridge does not regularize.

  The model outputs are always excluded. For functional and Sequential
  models, so are the weight-reading ops (convs, matmuls, batch-norm scales)
  of every layer whose output channels rebuild cannot narrow (see
  `fixed_width_layers`; the layers of nested functional and Sequential
  models are layers of surgery's flat view). Subclassed models (which
  rebuild does not support) only exclude their outputs.

  Args:
    traced: a `tracing.TracedModel`.
    keep_output_widths: exclude the groups reaching a model output; False
      leaves them regularized (the original's default).

  Returns:
    The `ExcludedOps`.
  """
  op_names = ([op.name for op in traced.output_ops] if keep_output_widths
              else [])
  try:
    channels = channel_model.analyze(traced.model)
  except (errors.UnsupportedModelError, errors.InvalidArgumentError) as e:
    logging.info('Only the outputs of model %r are kept from '
                 'regularization: %s', traced.model.name, e)
    return ExcludedOps(op_names, {})
  fixed = fixed_width_layers(channels)
  layers, warned = {}, set()
  for op in traced.forward_ops():
    name = traced.known_layer_name(op, channels.layers)
    if name is None or name not in fixed or (
        fixed[name] == OUTPUT_REASON and not keep_output_widths):
      continue
    op_names.append(op.name)
    layers[name] = fixed[name]
    if fixed[name] != OUTPUT_REASON and channels.rule(name).width_attribute:
      warned.add(name)
  return ExcludedOps(op_names, layers, sorted(warned))
