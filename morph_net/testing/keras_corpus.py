"""A corpus of small Keras 3 models that together use every core layer with channels.

The differential cost test runs the analysis on every model of the corpus
with random dead-channel patterns and compares `get_cost()` with an
independent count on the rebuilt model (`reference_cost`). A new layer kind
is one more entry here.

Every builder returns a fresh, built model with small inputs (the whole
corpus traces in seconds). Width-taking layers have explicit names; the
entries' `layers` list the Keras layer classes each model exercises, so a
test can check that the corpus covers every layer kind it promises to.
"""

import dataclasses
from typing import Callable, Dict, List, Tuple

import keras

from morph_net.testing import custom_layers

__all__ = ['CorpusModel', 'CORPUS', 'get', 'names', 'covered_layer_types']

L = keras.layers


@dataclasses.dataclass(frozen=True)
class CorpusModel:
  """One corpus entry.

  Attributes:
    name: unique name of the entry.
    build: returns a new built Keras model.
    notes: what the model exercises (read in test failures).
  """
  name: str
  build: Callable[[], keras.Model]
  notes: str = ''


def _conv_bn(x, filters, name, kernel_size=3, strides=1, padding='same',
             relu=True, conv=L.Conv2D, **kwargs):
  """conv (no bias) -> BatchNormalization [-> ReLU], layers name, name_bn."""
  y = conv(filters, kernel_size, strides=strides, padding=padding,
           use_bias=False, name=name, **kwargs)(x)
  y = L.BatchNormalization(name=name + '_bn')(y)
  return L.ReLU(name=name + '_relu')(y) if relu else y


def _dense_bn(x, units, name, relu=True):
  y = L.Dense(units, use_bias=False, name=name)(x)
  y = L.BatchNormalization(name=name + '_bn')(y)
  return L.ReLU(name=name + '_relu')(y) if relu else y


def flatten_head():
  """Conv stack -> Flatten -> Dense: the Dense counts positions x channels."""
  x = keras.Input((12, 12, 1))
  y = _conv_bn(x, 16, 'conv1')
  y = _conv_bn(y, 32, 'conv2', strides=2)
  y = L.Flatten(name='flatten')(y)
  y = L.Dense(24, name='fc1')(y)
  return keras.Model(x, L.Dense(10, name='logits')(y), name='flatten_head')


def upsampling_nearest():
  """U-Net decoder step: nearest upsampling lowers to Repeat/Tile/Reshape."""
  x = keras.Input((6, 6, 3))
  y = _conv_bn(x, 16, 'enc')
  y = L.UpSampling2D(name='up')(y)
  y = _conv_bn(y, 8, 'dec', kernel_size=1)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='upsampling_nearest')


def upsampling_bilinear():
  x = keras.Input((6, 6, 3))
  y = _conv_bn(x, 12, 'enc')
  y = L.UpSampling2D(interpolation='bilinear', name='up')(y)
  y = _conv_bn(y, 6, 'dec')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y),
                     name='upsampling_bilinear')


def upsampling_1d_3d():
  x = keras.Input((6, 3))
  y = _conv_bn(x, 8, 'c1', conv=L.Conv1D)
  y = L.UpSampling1D(name='up1')(y)
  y = _conv_bn(y, 6, 'c2', conv=L.Conv1D)
  y = L.GlobalMaxPooling1D(name='gmp')(y)
  z_in = keras.Input((3, 3, 3, 2))
  z = _conv_bn(z_in, 6, 'v1', conv=L.Conv3D)
  z = L.UpSampling3D(name='up3')(z)
  z = _conv_bn(z, 4, 'v2', conv=L.Conv3D)
  z = L.GlobalAveragePooling3D(name='gap3')(z)
  merged = L.Concatenate(name='merge')([y, z])
  return keras.Model([x, z_in], L.Dense(3, name='logits')(merged),
                     name='upsampling_1d_3d')


def conv1d_flatten():
  """Conv1D lowers to ExpandDims/Conv2D/Squeeze; pooling too."""
  x = keras.Input((32, 2))
  y = _conv_bn(x, 8, 'c1', kernel_size=5, padding='valid', conv=L.Conv1D)
  y = L.MaxPooling1D(name='pool')(y)
  y = _conv_bn(y, 16, 'c2', padding='valid', conv=L.Conv1D)
  y = L.AveragePooling1D(2, name='avg')(y)
  y = L.Flatten(name='flatten')(y)
  return keras.Model(x, L.Dense(4, name='logits')(y), name='conv1d_flatten')


def dense_on_tokens():
  """Dense on rank 3 (Tensordot), LayerNormalization, token pooling."""
  x = keras.Input((8, 6))
  y = L.Dense(16, name='d1')(x)
  y = L.LayerNormalization(name='ln')(y)
  y = L.Activation('gelu', name='gelu')(y)
  y = L.Dense(12, name='d2')(y)
  y = L.GlobalAveragePooling1D(name='pool')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='dense_on_tokens')


def grouped_conv():
  """Keras 3 compiles a grouped conv into a function call."""
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'c')
  y = _conv_bn(y, 16, 'g', padding='valid', groups=4)
  y = _conv_bn(y, 4, 'p', kernel_size=1)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='grouped_conv')


def channelwise_conv():
  """Conv2D with as many groups as channels (ConvNeXt's depthwise conv):
  its channels follow its input's and are rebuilt with fewer groups."""
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'c', kernel_size=1)
  y = _conv_bn(y, 8, 'cw', groups=8)
  y = _conv_bn(y, 6, 'p', kernel_size=1)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='channelwise_conv')


def bidirectional_lstm():
  x = keras.Input((10, 4))
  y = L.Dense(8, name='embed')(x)
  y = L.Bidirectional(L.LSTM(6, name='lstm'), name='bilstm')(y)
  y = _dense_bn(y, 12, 'fc')
  return keras.Model(x, L.Dense(3, name='logits')(y), name='bidirectional_lstm')


def gru_sequences():
  x = keras.Input((7, 5))
  y = L.Dense(10, name='embed')(x)
  y = L.GRU(8, return_sequences=True, name='gru')(y)
  y = L.Dense(6, name='proj')(y)
  y = L.GlobalAveragePooling1D(name='pool')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='gru_sequences')


def simple_rnn():
  x = keras.Input((6, 3))
  y = L.Conv1D(8, 3, padding='same', name='c')(x)
  y = L.SimpleRNN(5, name='rnn')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='simple_rnn')


def lstm_sequences():
  x = keras.Input((6, 4))
  y = L.Dense(9, name='embed')(x)
  y = L.LSTM(7, return_sequences=True, name='lstm')(y)
  y = L.Dense(5, name='proj')(y)
  y = L.Flatten(name='flatten')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='lstm_sequences')


def attention_block():
  """A transformer block: projections and attention products."""
  x = keras.Input((6, 8))
  h = L.Dense(16, name='embed')(x)
  a = L.MultiHeadAttention(num_heads=2, key_dim=4, name='mha')(h, h)
  h = L.Add(name='res1')([h, a])
  h = L.LayerNormalization(name='ln1')(h)
  f = L.Dense(32, activation='relu', name='ffn1')(h)
  f = L.Dense(16, name='ffn2')(f)
  h = L.Add(name='res2')([h, f])
  h = L.GlobalAveragePooling1D(name='pool')(h)
  return keras.Model(x, L.Dense(3, name='logits')(h), name='attention_block')


def conv3d_pooling():
  x = keras.Input((6, 6, 6, 2))
  y = _conv_bn(x, 8, 'c1', conv=L.Conv3D)
  y = L.MaxPooling3D(2, name='max')(y)
  y = _conv_bn(y, 12, 'c2', conv=L.Conv3D)
  y = L.AveragePooling3D(pool_size=2, name='avg')(y)
  y = L.Flatten(name='flatten')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='conv3d_pooling')


def conv_transpose_2d():
  x = keras.Input((5, 5, 3))
  y = _conv_bn(x, 8, 'enc')
  y = _conv_bn(y, 6, 'up', strides=2, padding='valid',
               conv=L.Conv2DTranspose)
  y = _conv_bn(y, 4, 'dec')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='conv_transpose_2d')


def conv_transpose_1d_3d():
  x = keras.Input((5, 3))
  y = _conv_bn(x, 6, 'c1', conv=L.Conv1D)
  y = _conv_bn(y, 4, 't1', strides=2, conv=L.Conv1DTranspose)
  y = L.GlobalAveragePooling1D(name='gap1')(y)
  z_in = keras.Input((3, 3, 3, 2))
  z = _conv_bn(z_in, 5, 'v1', conv=L.Conv3D)
  z = _conv_bn(z, 4, 't3', strides=2, conv=L.Conv3DTranspose)
  z = L.GlobalAveragePooling3D(name='gap3')(z)
  merged = L.Concatenate(name='merge')([y, z])
  return keras.Model([x, z_in], L.Dense(2, name='logits')(merged),
                     name='conv_transpose_1d_3d')


def separable_2d():
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'stem')
  y = _conv_bn(y, 12, 'sep1', conv=L.SeparableConv2D, depth_multiplier=2)
  y = _conv_bn(y, 10, 'sep2', strides=2, conv=L.SeparableConv2D)
  y = L.GlobalMaxPooling2D(name='gmp')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='separable_2d')


def separable_1d():
  x = keras.Input((10, 3))
  y = _conv_bn(x, 6, 'stem', conv=L.Conv1D)
  y = _conv_bn(y, 9, 'sep', conv=L.SeparableConv1D)
  y = L.GlobalAveragePooling1D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='separable_1d')


def depthwise_2d():
  """MobileNet block: expand, depthwise (multiplier 2), project."""
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 6, 'expand', kernel_size=1)
  y = L.DepthwiseConv2D(3, depth_multiplier=2, padding='same',
                        use_bias=False, name='dw')(y)
  y = L.BatchNormalization(name='dw_bn')(y)
  y = L.ReLU(6.0, name='dw_relu')(y)
  y = _conv_bn(y, 5, 'project', kernel_size=1, relu=False)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='depthwise_2d')


def depthwise_1d():
  x = keras.Input((10, 3))
  y = _conv_bn(x, 6, 'c', conv=L.Conv1D)
  y = L.DepthwiseConv1D(3, padding='same', use_bias=False, name='dw')(y)
  y = L.BatchNormalization(name='dw_bn')(y)
  y = _conv_bn(y, 4, 'p', kernel_size=1, conv=L.Conv1D)
  y = L.GlobalAveragePooling1D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='depthwise_1d')


def residual():
  """Identity and projection shortcuts: the Add groups both branches."""
  x = keras.Input((8, 8, 3))
  stem = _conv_bn(x, 8, 'stem')
  a = _conv_bn(stem, 6, 'b1_conv1')
  a = _conv_bn(a, 8, 'b1_conv2', relu=False)
  y = L.ReLU(name='b1_out')(L.Add(name='b1_add')([stem, a]))
  b = _conv_bn(y, 6, 'b2_conv1', strides=2)
  b = _conv_bn(b, 12, 'b2_conv2', relu=False)
  s = _conv_bn(y, 12, 'b2_proj', kernel_size=1, strides=2, relu=False)
  z = L.ReLU(name='b2_out')(L.Add(name='b2_add')([s, b]))
  z = L.GlobalAveragePooling2D(name='gap')(z)
  return keras.Model(x, L.Dense(4, name='logits')(z), name='residual')


def elementwise_merges():
  """Subtract, Multiply, Average, Maximum, Minimum group their inputs."""
  x = keras.Input((6, 6, 3))
  a = _conv_bn(x, 6, 'a')
  b = _conv_bn(x, 6, 'b')
  c = _conv_bn(x, 6, 'c')
  d = _conv_bn(x, 6, 'd')
  y = L.Subtract(name='sub')([a, b])
  y = L.Multiply(name='mul')([y, c])
  y = L.Average(name='avg')([y, d])
  y = L.Maximum(name='max')([y, a])
  y = L.Minimum(name='min')([y, b])
  y = _conv_bn(y, 5, 'head')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y),
                     name='elementwise_merges')


def inception():
  """Three towers concatenated (one through max pooling)."""
  x = keras.Input((8, 8, 3))
  stem = _conv_bn(x, 8, 'stem')
  t1 = _conv_bn(stem, 4, 'tower1')
  t2 = _conv_bn(stem, 6, 'tower2_reduce', kernel_size=1)
  t2 = _conv_bn(t2, 5, 'tower2')
  t3 = L.MaxPooling2D(3, strides=1, padding='same', name='tower3_pool')(stem)
  t3 = _conv_bn(t3, 3, 'tower3', kernel_size=1)
  cat = L.Concatenate(name='concat')([t1, t2, t3])
  y = _conv_bn(cat, 10, 'head', strides=2)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='inception')


def crop_and_pad_2d():
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'c1')
  y = L.ZeroPadding2D(1, name='pad')(y)
  y = _conv_bn(y, 6, 'c2', padding='valid')
  y = L.Cropping2D(((1, 0), (0, 1)), name='crop')(y)
  y = _conv_bn(y, 4, 'c3')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='crop_and_pad_2d')


def crop_and_pad_1d_3d():
  x = keras.Input((8, 3))
  y = _conv_bn(x, 6, 'c1', conv=L.Conv1D)
  y = L.ZeroPadding1D(2, name='pad1')(y)
  y = L.Cropping1D((1, 2), name='crop1')(y)
  y = _conv_bn(y, 5, 'c2', conv=L.Conv1D)
  y = L.GlobalAveragePooling1D(name='gap1')(y)
  z_in = keras.Input((4, 4, 4, 2))
  z = _conv_bn(z_in, 4, 'v1', conv=L.Conv3D)
  z = L.ZeroPadding3D(1, name='pad3')(z)
  z = L.Cropping3D(1, name='crop3')(z)
  z = _conv_bn(z, 3, 'v2', conv=L.Conv3D)
  z = L.GlobalMaxPooling3D(name='gmp3')(z)
  merged = L.Concatenate(name='merge')([y, z])
  return keras.Model([x, z_in], L.Dense(2, name='logits')(merged),
                     name='crop_and_pad_1d_3d')


def pooling_2d():
  x = keras.Input((12, 12, 3))
  y = _conv_bn(x, 8, 'c1')
  y = L.MaxPooling2D(name='max')(y)
  y = _conv_bn(y, 10, 'c2')
  y = L.AveragePooling2D(2, name='avg')(y)
  y = _conv_bn(y, 6, 'c3')
  y = L.GlobalMaxPooling2D(name='gmp')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='pooling_2d')


def reshape_to_image():
  """A Dense feeding Reshape((4, 4, 2)): its units are not channels."""
  x = keras.Input((5,))
  y = L.Dense(32, name='project')(x)
  y = L.Reshape((4, 4, 2), name='reshape')(y)
  y = _conv_bn(y, 6, 'conv')
  y = L.Reshape((16, 6), name='to_tokens')(y)
  y = L.Dense(4, name='token_dense')(y)
  y = L.GlobalAveragePooling1D(name='pool')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='reshape_to_image')


def dropouts_and_noise():
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'c1')
  y = L.SpatialDropout2D(0.2, name='sdrop')(y)
  y = L.GaussianNoise(0.1, name='noise')(y)
  y = _conv_bn(y, 6, 'c2')
  y = L.GaussianDropout(0.1, name='gdrop')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  y = L.Dropout(0.3, name='drop')(y)
  y = L.AlphaDropout(0.1, name='adrop')(y)
  y = _dense_bn(y, 10, 'fc')
  return keras.Model(x, L.Dense(2, name='logits')(y),
                     name='dropouts_and_noise')


def activations():
  x = keras.Input((6, 6, 3))
  y = L.Conv2D(8, 3, padding='same', name='c1')(x)
  y = L.LeakyReLU(name='leaky')(y)
  y = L.Conv2D(8, 3, padding='same', name='c2')(y)
  y = L.PReLU(shared_axes=[1, 2], name='prelu')(y)
  y = L.Conv2D(6, 3, padding='same', name='c3')(y)
  y = L.ELU(name='elu')(y)
  y = L.Activation('swish', name='swish')(y)
  y = L.Conv2D(5, 1, name='c4')(y)
  y = L.Softmax(name='softmax')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='activations')


def layer_norm_conv():
  x = keras.Input((6, 6, 3))
  y = L.Conv2D(8, 3, padding='same', name='c1')(x)
  y = L.LayerNormalization(name='ln')(y)
  y = L.Conv2D(6, 3, padding='same', name='c2')(y)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='layer_norm_conv')


def nested_functional():
  """A functional base used as a layer of a model with a new head."""
  base_in = keras.Input((8, 8, 3))
  b = _conv_bn(base_in, 8, 'base_c1')
  b = _conv_bn(b, 12, 'base_c2', strides=2)
  base = keras.Model(base_in, b, name='base')
  x = keras.Input((8, 8, 3))
  y = base(x)
  y = _conv_bn(y, 10, 'head_conv')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(3, name='logits')(y), name='nested_functional')


def sequential_head():
  """A Sequential head on a functional base."""
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'c1')
  y = _conv_bn(y, 10, 'c2', strides=2)
  y = L.GlobalAveragePooling2D(name='gap')(y)
  head = keras.Sequential([
      keras.Input((10,)),
      L.Dense(12, use_bias=False, name='head_fc'),
      L.BatchNormalization(name='head_fc_bn'),
      L.ReLU(name='head_fc_relu'),
      L.Dense(3, name='head_logits'),
  ], name='head')
  return keras.Model(x, head(y), name='sequential_head')


def sequential():
  return keras.Sequential([
      keras.Input((10, 10, 1)),
      L.Conv2D(8, 3, use_bias=False, name='c1'),
      L.BatchNormalization(name='c1_bn'),
      L.ReLU(name='c1_relu'),
      L.MaxPooling2D(name='pool'),
      L.Conv2D(12, 3, use_bias=False, name='c2'),
      L.BatchNormalization(name='c2_bn'),
      L.ReLU(name='c2_relu'),
      L.Flatten(name='flatten'),
      L.Dense(16, name='fc'),
      L.Dense(3, name='logits'),
  ], name='sequential')


def shared_layers():
  """One conv applied to two inputs; the outputs are added."""
  left = keras.Input((6, 6, 3))
  right = keras.Input((6, 6, 3))
  shared = L.Conv2D(8, 3, padding='same', use_bias=False, name='shared')
  bn = L.BatchNormalization(name='shared_bn')
  y = L.Add(name='add')([bn(shared(left)), bn(shared(right))])
  y = _conv_bn(y, 6, 'head')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model([left, right], L.Dense(2, name='logits')(y),
                     name='shared_layers')


def multi_output():
  """Two inputs, two outputs (a classifier and a dense map)."""
  image = keras.Input((8, 8, 3), name='image')
  extra = keras.Input((4,), name='extra')
  y = _conv_bn(image, 8, 'c1')
  y = _conv_bn(y, 10, 'c2', strides=2)
  seg = L.Conv2D(2, 1, name='seg')(y)
  pooled = L.GlobalAveragePooling2D(name='gap')(y)
  e = _dense_bn(extra, 6, 'extra_fc')
  joined = L.Concatenate(name='join')([pooled, e])
  cls = L.Dense(3, name='cls')(joined)
  return keras.Model([image, extra], [cls, seg], name='multi_output')


def mini_unet():
  """Encoder-decoder with a concatenated skip and nearest upsampling."""
  x = keras.Input((8, 8, 3))
  e1 = _conv_bn(x, 6, 'e1')
  e2 = _conv_bn(L.MaxPooling2D(name='down')(e1), 10, 'e2')
  u = L.UpSampling2D(name='up')(e2)
  u = L.Concatenate(name='skip')([u, e1])
  d = _conv_bn(u, 6, 'd1')
  return keras.Model(x, L.Conv2D(2, 1, name='mask')(d), name='mini_unet')


def permute_and_dense():
  """A Permute (Transpose) before a Dense: the channels are a new space."""
  x = keras.Input((4, 6))
  y = L.Dense(8, name='d1')(x)
  y = L.Permute((2, 1), name='permute')(y)
  y = L.Dense(5, name='d2')(y)
  y = L.Flatten(name='flatten')(y)
  return keras.Model(x, L.Dense(2, name='logits')(y), name='permute_and_dense')


def detector_head():
  """Two-scale detector: per-scale box and class predictions reshaped to
  (positions, k) and concatenated along the positions axis (axis 1 and -2)
  at two model outputs; the channel count of each output stays k."""
  x = keras.Input((8, 8, 3))
  p1 = _conv_bn(x, 12, 'stem')
  p2 = _conv_bn(p1, 16, 'down', strides=2)
  boxes, classes = [], []
  for i, p in enumerate((p1, p2)):
    h = _conv_bn(p, 8, 'head%d' % i, kernel_size=1)
    b = L.Conv2D(4, 3, padding='same', name='box%d' % i)(h)
    boxes.append(L.Reshape((-1, 4), name='box%d_flat' % i)(b))
    c = L.Conv2D(3, 3, padding='same', name='cls%d' % i)(h)
    classes.append(L.Reshape((-1, 3), name='cls%d_flat' % i)(c))
  return keras.Model(x, [L.Concatenate(axis=1, name='boxes')(boxes),
                         L.Concatenate(axis=-2, name='classes')(classes)],
                     name='detector_head')


def keras_ops():
  """keras.ops on symbolic tensors: ops.relu after a batch norm, an
  ops.add residual, a scalar multiply, a channel concatenation, a
  sigmoid gate broadcast over positions (ops.mean keepdims, x * gate),
  ops.mean over positions and ops.reshape keeping the last axis."""
  ops = keras.ops
  x = keras.Input((8, 8, 3))
  y = L.Conv2D(12, 3, padding='same', use_bias=False, name='conv1')(x)
  y = ops.relu(L.BatchNormalization(name='conv1_bn')(y))
  y = ops.add(y, _conv_bn(y, 12, 'res', relu=False))
  y = y * 2.0
  y = ops.concatenate([_conv_bn(y, 6, 'left', kernel_size=1),
                       _conv_bn(y, 4, 'right', kernel_size=1)], axis=-1)
  y = y * ops.sigmoid(ops.mean(y, axis=[1, 2], keepdims=True))
  y = ops.reshape(ops.mean(y, axis=[1, 2]), (-1, 1, 10))
  y = ops.reshape(_dense_bn(y, 8, 'fc'), (-1, 8))
  return keras.Model(x, L.Dense(3, name='logits')(y), name='keras_ops')


def squeeze_excite_layer():
  """A Squeeze-Excitation block written as a custom layer (keras.ops and
  two Dense inside), whose layer rule is registered (process-wide, by this
  builder): the channels it scales narrow, its bottleneck keeps its width."""
  custom_layers.register_squeeze_excite()
  x = keras.Input((8, 8, 3))
  y = _conv_bn(x, 8, 'conv1')
  y = _conv_bn(y, 16, 'conv2')
  y = custom_layers.SqueezeExcite(name='se2')(y)
  y = _conv_bn(y, 8, 'conv3')
  y = L.GlobalAveragePooling2D(name='gap')(y)
  return keras.Model(x, L.Dense(4, name='logits')(y),
                     name='squeeze_excite_layer')


CORPUS: Tuple[CorpusModel, ...] = tuple(
    CorpusModel(fn.__name__, fn, (fn.__doc__ or '').strip())
    for fn in (flatten_head, upsampling_nearest, upsampling_bilinear,
               upsampling_1d_3d, conv1d_flatten, dense_on_tokens,
               grouped_conv, channelwise_conv, bidirectional_lstm, gru_sequences, simple_rnn,
               lstm_sequences, attention_block, conv3d_pooling,
               conv_transpose_2d, conv_transpose_1d_3d, separable_2d,
               separable_1d, depthwise_2d, depthwise_1d, residual,
               elementwise_merges, inception, crop_and_pad_2d,
               crop_and_pad_1d_3d, pooling_2d, reshape_to_image,
               dropouts_and_noise, activations, layer_norm_conv,
               nested_functional, sequential_head, sequential, shared_layers,
               multi_output, mini_unet, permute_and_dense, detector_head,
               keras_ops, squeeze_excite_layer))

_BY_NAME: Dict[str, CorpusModel] = {entry.name: entry for entry in CORPUS}


def names() -> List[str]:
  """Names of the corpus models, in corpus order."""
  return [entry.name for entry in CORPUS]


def get(name: str) -> CorpusModel:
  """Returns the corpus entry `name`.

  Raises:
    KeyError: for an unknown name (the message lists the known ones).
  """
  if name not in _BY_NAME:
    raise KeyError('No corpus model %r; known: %s.' % (name, names()))
  return _BY_NAME[name]


def covered_layer_types(models) -> set:
  """Keras layer classes used by `models`, nested models included."""
  types = set()
  for model in models:
    for layer in model._flatten_layers(include_self=False, recursive=True):  # pylint: disable=protected-access
      types.add(type(layer))
      inner = getattr(layer, 'layer', None)  # Bidirectional, wrappers.
      if inner is not None:
        types.add(type(inner))
  return types
