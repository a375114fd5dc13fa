"""Model families of the experiments, configurable with gin.

* `small_resnet`: a CPU-sized ResNet-style CNN with batch norm (stem conv,
  stages of residual blocks, a 1x1 projection conv where the width or the
  resolution changes). `gated=True` inserts a LogisticSigmoidGating layer
  after every batch norm, for the LogisticSigmoid regularizers; the gated
  and plain variants have the same conv names, so a structure learned on the
  gated one rebuilds the plain one.
* `keras_application`: any `keras.applications` model by name (weights=None,
  include_top=False) with a global pool and a `logits` Dense head.

Every model ends with a Dense layer called `logits` (no softmax).
"""

from typing import Sequence, Tuple

import gin
import keras

from morph_net.probabilistic_gating import activation_gating

__all__ = ['build_model', 'small_resnet', 'keras_application']

LOGITS = 'logits'


def _conv_bn(x, filters, kernel, strides, name, gated, relu=True,
             batch_norm=True):
  x = keras.layers.Conv2D(filters, kernel, strides=strides, padding='same',
                          use_bias=not batch_norm, name=name)(x)
  if batch_norm:
    x = keras.layers.BatchNormalization(momentum=0.9, name=name + '_bn')(x)
  if gated:
    x = activation_gating.LogisticSigmoidGating(name=name + '_gate')(x)
  if relu:
    x = keras.layers.ReLU(name=name + '_relu')(x)
  return x


@gin.configurable
def small_resnet(input_shape: Tuple[int, int, int] = (28, 28, 1),
                 num_classes: int = 10,
                 widths: Sequence[int] = (32, 64, 128),
                 blocks_per_stage: int = 1,
                 stem_width: int = 32,
                 gated: bool = False,
                 batch_norm: bool = True,
                 name: str = 'small_resnet') -> keras.Model:
  """A small ResNet: stem, then one stage per width (stride 2 after the first).

  Args:
    input_shape: image shape (H, W, C).
    num_classes: size of the `logits` layer.
    widths: channels of each stage.
    blocks_per_stage: residual blocks (conv-bn-relu-conv-bn + skip) a stage.
    stem_width: channels of the stem conv.
    gated: add a LogisticSigmoidGating layer after each batch norm.
    batch_norm: False drops the batch norms (convs get biases). GroupLasso
      needs this: behind a batch norm a filter's scale does not change the
      output, so its norm says nothing about the channel's use and the
      penalty shrinks every filter alike.
    name: model name.

  Returns:
    A functional keras.Model with layer names `stem`, `s<i>b<j>_conv1`,
    `s<i>b<j>_conv2`, `s<i>_proj`, `logits`.
  """
  inputs = keras.Input(tuple(input_shape), name='image')
  conv = lambda *args, **kwargs: _conv_bn(*args, batch_norm=batch_norm,
                                          **kwargs)
  x = conv(inputs, stem_width, 3, 1, 'stem', gated)
  channels = stem_width
  for i, width in enumerate(widths):
    for j in range(blocks_per_stage):
      strides = 2 if (i > 0 and j == 0) else 1
      prefix = 's%db%d' % (i + 1, j + 1)
      shortcut = x
      if strides != 1 or channels != width:
        shortcut = conv(x, width, 1, strides, 's%d_proj' % (i + 1), gated,
                        relu=False)
      y = conv(x, width, 3, strides, prefix + '_conv1', gated)
      y = conv(y, width, 3, 1, prefix + '_conv2', gated, relu=False)
      x = keras.layers.Add(name=prefix + '_add')([shortcut, y])
      x = keras.layers.ReLU(name=prefix + '_out')(x)
      channels = width
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  outputs = keras.layers.Dense(num_classes, name=LOGITS)(x)
  return keras.Model(inputs, outputs, name=name)


@gin.configurable
def keras_application(input_shape: Tuple[int, int, int] = (32, 32, 3),
                      num_classes: int = 10,
                      application: str = 'MobileNetV2',
                      gated: bool = False,
                      **application_kwargs) -> keras.Model:
  """A keras.applications model by name, randomly initialised.

  Args:
    input_shape: image shape (H, W, C); most applications need 3 channels.
    num_classes: size of the `logits` layer.
    application: the keras.applications constructor, e.g. 'MobileNetV2',
      'ResNet50', 'EfficientNetB0'.
    gated: not supported (raises), LogisticSigmoid needs gates in the model.
    **application_kwargs: more constructor arguments (e.g. alpha=0.35).

  Returns:
    A functional keras.Model: the application's body, a global average pool
    and a Dense `logits` layer.

  Raises:
    ValueError: for an unknown application name or gated=True.
  """
  if gated:
    raise ValueError('Invalid value for argument `gated`. keras_application '
                     'models have no gates; use a Gamma or GroupLasso '
                     'regularizer with them. Received: gated=True')
  constructor = getattr(keras.applications, application, None)
  if constructor is None or not callable(constructor):
    known = sorted(n for n in dir(keras.applications) if n[:1].isupper())
    raise ValueError('Invalid value for argument `application`. Expected a '
                     'keras.applications model such as %s. Received: '
                     'application=%r' % (', '.join(known[:8]), application))
  base = constructor(input_shape=tuple(input_shape), include_top=False,
                     weights=None, **application_kwargs)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(base.output)
  outputs = keras.layers.Dense(num_classes, name=LOGITS)(x)
  return keras.Model(base.input, outputs, name=application.lower())


@gin.configurable
def build_model(family: str = 'small_resnet', input_shape=(28, 28, 1),
                num_classes: int = 10, gated: bool = False) -> keras.Model:
  """Builds the model family `family` ('small_resnet' or 'keras_application').

  The family's own arguments are bound in gin (`small_resnet.widths = ...`).
  """
  families = {'small_resnet': small_resnet,
              'keras_application': keras_application}
  if family not in families:
    raise ValueError('Invalid value for argument `family`. Expected one of %s.'
                     ' Received: family=%r' % (sorted(families), family))
  return families[family](input_shape=tuple(input_shape),
                          num_classes=num_classes, gated=gated)
