"""Weight transfer from a model into its rebuilt, narrower copy.

Kept apart from the cloning in `rebuild` because choosing which channels
survive and slicing every weight to them is independent of how the new model
is built; `rebuild.rebuild(..., transfer_weights=True)` calls into it.
"""

import collections

from absl import logging
import keras
import numpy as np

from morph_net.tools.channel_analysis import _DEPTHWISE_TYPES
from morph_net.tools.channel_analysis import _layer_desc
from morph_net.tools.channel_analysis import _orig_size
from morph_net.tools.channel_analysis import _SEPARABLE_TYPES
from morph_net.tools.channel_analysis import _TRANSPOSE_TYPES
from morph_net.tools.channel_analysis import SOURCE_LAYER_TYPES

__all__ = ['choose_kept_channels']

L = keras.layers


def choose_kept_channels(model, plan, alive_masks=None):
  """{group id: sorted kept channel indices} for the widths of `plan`."""
  ch = plan.channels
  alive_masks = dict(alive_masks or {})
  unknown = sorted(set(alive_masks) - set(ch.source_layers()))
  if unknown:
    raise ValueError('alive_masks names layers %s that are not width-taking '
                     'layers of model %r.' % (unknown, model.name))
  scores = collections.defaultdict(lambda: 0.0)
  masks = {}
  for name in ch.source_layers():
    gid = ch.group_of(name)
    if name in alive_masks:
      mask = np.asarray(alive_masks[name], bool).reshape([-1])
      if gid in masks and not np.array_equal(masks[gid][1], mask):
        raise ValueError(
            'alive_masks of %r and %r differ, but the layers are in one '
            'channel group.' % (masks[gid][0], name))
      masks[gid] = (name, mask)
  # Batch-norm |gamma| of the layers that normalise each group.
  has_bn = set()
  for name, layer in ch.layers.items():
    if isinstance(layer, L.BatchNormalization) and layer.scale:
      space = ch.layer_in.get(name, [None])[0]
      if space and space[0] == 'g':
        gid = ch.find(space[1])
        scores[gid] = scores[gid] + np.abs(
            keras.ops.convert_to_numpy(layer.gamma))
        has_bn.add(gid)
  for name in ch.source_layers():
    gid = ch.group_of(name)
    if gid in has_bn:
      continue
    kernel = keras.ops.convert_to_numpy(_kernel(ch.layers[name]))
    axis = -2 if isinstance(ch.layers[name], _TRANSPOSE_TYPES) else -1
    kernel = np.moveaxis(kernel, axis, -1).reshape([-1, kernel.shape[axis]])
    scores[gid] = scores[gid] + np.sqrt((kernel ** 2).sum(axis=0))
  kept = {}
  for gid, width in plan.group_width.items():
    size = ch.group_size(gid)
    if width > size:
      raise ValueError(
          'Cannot transfer weights: group of layers %s grows from %d to %d '
          'channels. Use transfer_weights=False for wider structures.' %
          ([n for n in ch.source_layers() if ch.group_of(n) == gid], size,
           width))
    if gid in masks:
      name, mask = masks[gid]
      if mask.size != size or int(mask.sum()) != width:
        if width == 0:
          kept[gid] = np.zeros([0], np.int64)
          continue
        raise ValueError(
            'alive_masks[%r] has %d of %d channels alive, but the structure '
            'gives width %d.' % (name, int(mask.sum()), mask.size, width))
      kept[gid] = np.flatnonzero(mask)
    else:
      order = np.argsort(-np.asarray(scores[gid]), kind='stable')
      kept[gid] = np.sort(order[:width])
  return kept


def _kernel(layer):
  if isinstance(layer, _SEPARABLE_TYPES):
    return layer.pointwise_kernel
  return layer.kernel


def _take(array, axis, idx):
  return np.take(array, idx, axis=axis)


def _transfer(model, new_model, plan, kept):
  ch = plan.channels
  old_layers = {l.name: l for l in model.layers}
  for new_layer in new_model.layers:
    if not new_layer.weights or new_layer.name not in plan.eff_out:
      continue
    old = old_layers[new_layer.name]
    name = new_layer.name
    in_space = plan.eff_in[name][0] if plan.eff_in[name] else None
    in_idx = plan.indices(in_space, kept) if in_space else None
    out_idx = plan.indices(plan.eff_out[name], kept)
    old_w = [keras.ops.convert_to_numpy(w) for w in old.weights]
    new_shapes = [tuple(w.shape) for w in new_layer.weights]
    if isinstance(old, _SEPARABLE_TYPES):
      k = int(old.depth_multiplier)
      rep = (in_idx[:, None] * k + np.arange(k)[None, :]).reshape([-1])
      values = [_take(old_w[0], -2, in_idx),
                _take(_take(old_w[1], -2, rep), -1, out_idx)] + [
                    _take(w, -1, out_idx) for w in old_w[2:]]
    elif isinstance(old, _TRANSPOSE_TYPES):
      values = [_take(_take(old_w[0], -1, in_idx), -2, out_idx)] + [
          _take(w, -1, out_idx) for w in old_w[1:]]
    elif isinstance(old, SOURCE_LAYER_TYPES):
      values = [_take(_take(old_w[0], -2, in_idx), -1, out_idx)] + [
          _take(w, -1, out_idx) for w in old_w[1:]]
    elif isinstance(old, _DEPTHWISE_TYPES):
      values = [_take(old_w[0], -2, in_idx)] + [
          _take(w, -1, out_idx) for w in old_w[1:]]
    else:
      values = []
      orig_c = _orig_size(ch, ch.layer_out[name])
      for w, shape in zip(old_w, new_shapes):
        if w.shape == shape:
          values.append(w)
        elif w.ndim and w.shape[-1] == orig_c:
          values.append(_take(w, -1, out_idx))
        else:
          raise ValueError(
              'Cannot transfer the weights of layer %s: weight of shape %s '
              'does not follow its %d channels. Use transfer_weights=False.'
              % (_layer_desc(old), w.shape, orig_c))
    for value, shape in zip(values, new_shapes):
      if tuple(value.shape) != shape:
        raise ValueError(
            'Cannot transfer the weights of layer %s: computed shape %s, '
            'rebuilt layer has %s.' % (_layer_desc(old), value.shape, shape))
    new_layer.set_weights(values)
  logging.info('Transferred weights into %r.', new_model.name)
