"""The benchmarks' networks: nested MobileNetV2, a VGG-style net, a small ResNet.

Shared by `cost_target.py`, `results_table.py` and `latency_speedup.py`.
None was designed for the benchmarks:

- `mobilenet_v2`: keras.applications MobileNetV2 (alpha 0.35, 32x32x3,
  random weights) nested as one layer under a new head (pool, `logits`).
- `vgg`: widths double down the network (16-32-64-128, the over-provisioned
  late layers of VGG); conv-bn-relu, one conv in the first stage and two in
  the others, max pooling between stages.
- `resnet`: the examples' small ResNet (16-32-64, one block per stage).
- `main_job_cnn` (`MAIN_JOB`, not in `ARCHITECTURES`, the grid of
  `cost_target.py` and `results_table.py`): the README main job's CNN
  (`examples/fashion_mnist_keras.build_model`, conv-bn-relu 32-64-128,
  28x28x1, 10 classes). Building it imports that script, which defines its
  absl flags (`--seed`, `--batch_size` ...): build it in programs whose
  own flags are not absl flags of those names.

`gated=True` puts a `LogisticSigmoidGating` layer after every batch norm
(for the LogisticSigmoid regularizers); the gated and plain networks have
the same width-taking layer names, so a structure learned on one rebuilds
the other.
"""

from typing import Optional, Sequence

__all__ = ['ARCHITECTURES', 'MAIN_JOB', 'build_model',
           'gate_after_batch_norm']

ARCHITECTURES = ('mobilenet_v2', 'vgg', 'resnet')
MAIN_JOB = 'main_job_cnn'


def unit_images(images):
  """Fashion-MNIST images as float32 in [0, 1] with a channel axis.

  Args:
    images: uint8 or float images, (N, H, W) or (N, H, W, C).

  Returns:
    float32 images (N, H, W, C), divided by 255 when above 1.
  """
  images = images.astype('float32')
  if images.ndim == 3:
    images = images[..., None]
  if images.max() > 1.0:
    images /= 255.0
  return images


def gate_after_batch_norm(model):
  """A copy of `model` with a LogisticSigmoidGating after every batch norm.

  Args:
    model: a functional Keras model (fresh weights: the copy is
      re-initialised).

  Returns:
    The gated copy; each gate is named `<batch norm name>_gate`.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top

  def call(layer, *args, **kwargs):
    outputs = layer(*args, **kwargs)
    if isinstance(layer, keras.layers.BatchNormalization):
      outputs = activation_gating.LogisticSigmoidGating(
          name=layer.name + '_gate')(outputs)
    return outputs

  return keras.models.clone_model(model, call_function=call)


def _vgg(input_shape: Sequence[int], gated: bool, num_classes: int):
  import keras  # pylint: disable=g-import-not-at-top
  from morph_net.probabilistic_gating import activation_gating  # pylint: disable=g-import-not-at-top
  inputs = keras.Input(tuple(input_shape), name='image')
  x = inputs
  for stage, width in enumerate((16, 32, 64, 128)):
    for conv in range(2 if stage else 1):
      name = 'conv%d_%d' % (stage + 1, conv + 1)
      x = keras.layers.Conv2D(width, 3, padding='same', use_bias=False,
                              name=name)(x)
      x = keras.layers.BatchNormalization(name=name + '_bn')(x)
      if gated:
        x = activation_gating.LogisticSigmoidGating(name=name + '_gate')(x)
      x = keras.layers.ReLU(name=name + '_relu')(x)
    if stage < 3:
      x = keras.layers.MaxPooling2D(2, name='pool%d' % (stage + 1))(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  outputs = keras.layers.Dense(num_classes, name='logits')(x)
  return keras.Model(inputs, outputs, name='vgg')


def _main_job_cnn(input_shape, gated: bool, num_classes: int):
  """The README main job's CNN (`examples/fashion_mnist_keras.build_model`;
  `gated`: its gates after each block)."""
  from morph_net import errors  # pylint: disable=g-import-not-at-top
  if (input_shape is not None and tuple(input_shape) != (28, 28, 1)) or (
      num_classes != 10):
    raise errors.InvalidArgumentError(
        'Invalid arguments for architecture %r (the main job\'s CNN is built '
        'for Fashion-MNIST only). Expected input_shape=(28, 28, 1) or None '
        'and num_classes=10. Received: input_shape=%r, num_classes=%r' % (
            MAIN_JOB, input_shape, num_classes))
  import keras  # pylint: disable=g-import-not-at-top
  from examples import fashion_mnist_keras  # pylint: disable=g-import-not-at-top
  return fashion_mnist_keras.build_model(keras, gated=gated)


def build_model(architecture: str, input_shape: Optional[Sequence[int]] = None,
                gated: bool = False, num_classes: int = 10):
  """The benchmark network `architecture` (see the module docstring).

  Args:
    architecture: one of `ARCHITECTURES`, or `MAIN_JOB`.
    input_shape: image shape (H, W, C); None: (32, 32, 3) for MobileNetV2,
      (28, 28, 1) for the others (Fashion-MNIST; the only one `MAIN_JOB`
      takes).
    gated: a LogisticSigmoidGating layer after every batch norm.
    num_classes: width of the `logits` layer.

  Returns:
    A functional keras.Model ending in a Dense `logits` layer.

  Raises:
    ValueError: for an unknown architecture.
    InvalidArgumentError: for `MAIN_JOB` with another input shape or
      class count.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from examples.experiment import models  # pylint: disable=g-import-not-at-top
  if architecture == 'mobilenet_v2':
    input_shape = tuple(input_shape or (32, 32, 3))
    base = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=0.35, include_top=False, weights=None)
    if gated:
      base = gate_after_batch_norm(base)
    inputs = keras.Input(input_shape, name='image')
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
    outputs = keras.layers.Dense(num_classes, name='logits')(x)
    return keras.Model(inputs, outputs, name='nested_mobilenet_v2')
  if architecture == 'vgg':
    return _vgg(input_shape or (28, 28, 1), gated, num_classes)
  if architecture == 'resnet':
    return models.small_resnet(
        input_shape=tuple(input_shape or (28, 28, 1)), widths=(16, 32, 64),
        stem_width=16, gated=gated, num_classes=num_classes)
  if architecture == MAIN_JOB:
    return _main_job_cnn(input_shape, gated, num_classes)
  raise ValueError('Unknown architecture %r; expected one of %s.' %
                   (architecture, ', '.join(ARCHITECTURES + (MAIN_JOB,))))
