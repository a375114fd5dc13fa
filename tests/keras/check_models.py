"""The small model of the check scripts run in subprocesses
(distributed_check, multi_worker_check, saving_check), for Keras 3 or
tf_keras: conv1 (8x8x3 -> 8x8x4, 3x3 same, no bias) -> bn1 -> ReLU ->
global average -> dense (4 -> 3). FLOPs: 2*64*9*3*4 + 2*4*3 = 13848."""


def build(keras):
  """The model, built with `keras` (the keras 3 or tf_keras module)."""
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, padding='same', use_bias=False, name='conv1')(
      inputs)
  x = keras.layers.BatchNormalization(name='bn1')(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(3, name='dense')(x))
