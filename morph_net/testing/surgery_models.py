"""Small Keras 3 models for model-surgery and structure-cost tests.

Functional and Sequential models with residual adds, an Inception-style
concat, depthwise convs with squeeze-and-excitation, and a Flatten; plus
cost arithmetic that does not use the library (`hand_flops`,
`kernel_params`), so tests can check the library's costs against it.
"""

import keras
import numpy as np

__all__ = ['conv_bn', 'residual_model', 'inception_model', 'depthwise_model',
           'sequential_model', 'fully_convolutional_model', 'input_add_model',
           'multiply_model', 'grouped_conv_model', 'ALIVE_RESIDUAL', 'SHRUNK_RESIDUAL', 'randomize_batch_norms', 'hand_flops',
           'kernel_params', 'zero_gammas']

L = keras.layers


def conv_bn(x, filters, name, kernel_size=3, strides=1, relu=True):
  y = L.Conv2D(filters, kernel_size, strides=strides, padding='same',
               use_bias=False, name=name)(x)
  y = L.BatchNormalization(name=name + '_bn')(y)
  return L.ReLU(name=name + '_relu')(y) if relu else y


def residual_model(input_shape=(16, 16, 3), classes=5, width=1):
  """stem -> two residual blocks (identity and projection) -> dense."""
  x = keras.Input(input_shape, name='image')
  stem = conv_bn(x, 8 * width, 'stem')
  a = conv_bn(stem, 6 * width, 'b1_conv1')
  a = conv_bn(a, 8 * width, 'b1_conv2', relu=False)
  y = L.Add(name='b1_add')([stem, a])
  y = L.ReLU(name='b1_out')(y)
  b = conv_bn(y, 6 * width, 'b2_conv1', strides=2)
  b = conv_bn(b, 12 * width, 'b2_conv2', relu=False)
  s = conv_bn(y, 12 * width, 'b2_proj', kernel_size=1, strides=2,
              relu=False)
  z = L.Add(name='b2_add')([s, b])
  z = L.ReLU(name='b2_out')(z)
  p = L.GlobalAveragePooling2D(name='gap')(z)
  out = L.Dense(classes, name='logits')(p)
  return keras.Model(x, out, name='residual')


def inception_model(input_shape=(16, 16, 3), classes=5):
  """stem -> Inception block with three towers -> concat -> conv -> dense."""
  x = keras.Input(input_shape, name='image')
  stem = conv_bn(x, 8, 'stem')
  t1 = conv_bn(stem, 4, 'tower1_conv')
  t2 = conv_bn(stem, 6, 'tower2_reduce', kernel_size=1)
  t2 = conv_bn(t2, 5, 'tower2_conv')
  t3 = L.MaxPooling2D(3, strides=1, padding='same', name='tower3_pool')(stem)
  t3 = conv_bn(t3, 3, 'tower3_proj', kernel_size=1)
  cat = L.Concatenate(name='concat')([t1, t2, t3])
  y = conv_bn(cat, 10, 'head', strides=2)
  # GlobalAveragePooling rather than Flatten: the core treats Reshape as a
  # leaf, so it counts every Flatten output as alive for the next matmul.
  f = L.GlobalAveragePooling2D(name='gap')(y)
  out = L.Dense(classes, name='logits')(f)
  return keras.Model(x, out, name='inception')


def depthwise_model(input_shape=(16, 16, 3), classes=4, depth_multiplier=1):
  """MobileNet-like: expand -> depthwise (x2) -> project, plus SE."""
  x = keras.Input(input_shape, name='image')
  y = conv_bn(x, 8, 'expand', kernel_size=1)
  y = L.DepthwiseConv2D(3, padding='same', depth_multiplier=depth_multiplier,
                        name='dw')(y)
  y = L.BatchNormalization(name='dw_bn')(y)
  se = L.GlobalAveragePooling2D(keepdims=True, name='se_pool')(y)
  se = L.Conv2D(4, 1, activation='relu', name='se_reduce')(se)
  se = L.Conv2D(8 * depth_multiplier, 1, activation='sigmoid', name='se_expand')(se)
  y = L.Multiply(name='se_mul')([y, se])
  y = conv_bn(y, 6, 'project', kernel_size=1, relu=False)
  p = L.GlobalAveragePooling2D(name='gap')(y)
  out = L.Dense(classes, name='logits')(p)
  return keras.Model(x, out, name='depthwise')


def sequential_model(input_shape=(12, 12, 3)):
  return keras.Sequential([
      keras.Input(input_shape),
      L.Conv2D(8, 3, name='c1'), L.BatchNormalization(name='c1_bn'),
      L.ReLU(name='c1_relu'),
      L.Conv2D(6, 3, strides=2, name='c2'), L.BatchNormalization(name='c2_bn'),
      L.ReLU(name='c2_relu'), L.Flatten(name='flat'), L.Dense(5, name='fc'),
  ], name='seq')


def fully_convolutional_model(channels=3):
  """conv1 (4, with batch norm) -> conv2 (6, with batch norm) -> 1x1 head
  (2), on inputs of any spatial size: Input((None, None, channels))."""
  x = keras.Input((None, None, channels), name='image')
  y = conv_bn(x, 4, 'conv1')
  y = conv_bn(y, 6, 'conv2', strides=2)
  return keras.Model(x, L.Conv2D(2, 1, name='head')(y), name='fcn')


def input_add_model():
  """Conv 'c' added to the model input: its width cannot change."""
  x = keras.Input((8, 8, 3), name='image')
  y = L.Conv2D(3, 1, name='c')(x)
  z = L.Add(name='add')([x, y])
  return keras.Model(x, L.Conv2D(2, 1, name='out')(z))


def multiply_model():
  """a -> a2 multiplied by b: a2 cannot vanish alone (Multiply needs both)."""
  x = keras.Input((8, 8, 3))
  a = L.Conv2D(4, 1, name='a')(x)
  a2 = L.Conv2D(4, 1, name='a2')(a)
  b = L.Conv2D(4, 1, name='b')(x)
  y = L.Multiply(name='mul')([a2, b])
  return keras.Model(x, L.Conv2D(2, 1, name='out')(y))


def grouped_conv_model(head='gap'):
  """c (8) -> grouped conv g (12, 4 groups) -> p (5) -> head -> logits (2).

  Args:
    head: 'gap' (GlobalAveragePooling2D) or 'flatten' (Flatten) between p
      and the logits.
  """
  x = keras.Input((6, 6, 3))
  y = L.Conv2D(8, 1, name='c')(x)
  y = L.Conv2D(12, 3, groups=4, name='g')(y)
  y = L.Conv2D(5, 1, name='p')(y)
  y = (L.GlobalAveragePooling2D(name='gap') if head == 'gap' else
       L.Flatten(name='flat'))(y)
  return keras.Model(x, L.Dense(2, name='logits')(y))


# A structure of residual_model() (width 1) with consistent groups (stem with
# b1_conv2, b2_conv2 with b2_proj); the rebuilt model has 294854 FLOPs and
# 1123 kernel weights.
ALIVE_RESIDUAL = {'stem': 5, 'b1_conv1': 3, 'b1_conv2': 5, 'b2_conv1': 6,
                  'b2_conv2': 7, 'b2_proj': 7}

# A learned structure of residual_model(width=8): groups consistent,
# b2_conv1 vanished.
SHRUNK_RESIDUAL = {'stem': 20, 'b1_conv2': 20, 'b1_conv1': 13, 'b2_conv1': 0,
                   'b2_conv2': 35, 'b2_proj': 35}


def randomize_batch_norms(model, seed=0):
  """Gives every batch norm non-trivial statistics so outputs depend on them."""
  rng = np.random.RandomState(seed)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                         rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])


def hand_flops(model):
  """FLOPs (multiply-add = 2) of conv, depthwise and dense layers."""
  total = 0
  for layer in model.layers:
    if isinstance(layer, L.DepthwiseConv2D):
      k = layer.kernel.shape
      out = layer.output.shape
      total += 2 * out[1] * out[2] * k[0] * k[1] * k[2] * k[3]
    elif isinstance(layer, (L.Conv2D,)) and not isinstance(
        layer, L.Conv2DTranspose):
      k = layer.kernel.shape
      out = layer.output.shape
      total += 2 * out[1] * out[2] * k[0] * k[1] * k[2] * k[3]
    elif isinstance(layer, L.Dense):
      k = layer.kernel.shape
      total += 2 * k[0] * k[1]
  return total


def kernel_params(model):
  """Number of weights in conv, depthwise and dense kernels (no biases)."""
  total = 0
  for layer in model.layers:
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
      total += int(np.prod(layer.kernel.shape))
  return total


def zero_gammas(model, kept):
  """Sets to 0 the BN gammas of channels not in kept[bn layer name]."""
  for name, idx in kept.items():
    layer = model.get_layer(name)
    gamma = keras.ops.convert_to_numpy(layer.gamma).copy()
    mask = np.ones_like(gamma, bool)
    mask[idx] = False
    gamma[mask] = 0.0
    layer.gamma.assign(gamma)
