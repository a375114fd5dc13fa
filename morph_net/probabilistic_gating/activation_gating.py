"""Probabilistic channel gating (FiGS): a learned Bernoulli gate per channel.

`LogisticSigmoidGating` multiplies its input by a mask with one entry per
channel. Each entry is a gate whose open probability is sigmoid(log_odds),
with one learned log-odds per channel.

* Training: one relaxed Bernoulli (logistic-sigmoid) sample per channel per
  call, shared by the batch and the spatial positions:
  `mask = sigmoid((log_odds + logistic_noise) / temperature)`. With
  `straight_through=True` the forward mask is the hard sample (exactly 0 or 1)
  and the gradient is that of the relaxed sample.
* Inference: the deterministic mask `log_odds > 0`, optionally times
  sigmoid(log_odds) (`soft_mask_for_inference=True`). The hard inference mask
  is written `hard + (p - stop_gradient(p))` with p = sigmoid(log_odds): its
  value is exactly 0 or 1, and a MorphNet regularizer built on a graph traced
  with `training=False` (how Keras models are analysed) is differentiable with
  respect to the log-odds (straight-through gradient of p).

The log-odds variable is named `mask_logits`, as in the original (the
layer attribute is `log_odds`, also readable as `logits`). In a
`tf.compat.v1` graph (not eager, not a traced tf.function) the training
sample is built as the original built it, by `_logistic_sigmoid_sample`: one
op of type 'LogisticSigmoidGating' whose first input is the mask_logits read,
followed by an Identity; graphs written for the original find their sources
there. Eagerly and in traced functions the sample is plain TF ops.

`LogisticSigmoidRegularizer`s (see
`morph_net.network_regularizers.logistic_sigmoid_regularizer`) find these gates
in the graph and regularize the mask (or the probability) weighted by the
cost of the channels.

Annealing: with `annealing_rate=N`, the training temperature is
`temperature * 0.1 ** (step / N)`, ten times lower every N steps. `step` is
the `global_step` passed to the layer (a scalar tf.Variable such as
`optimizer.iterations`, or a callable returning one; not serialized), or by
default a non-trainable int64 variable `step` the layer owns and increments on
every training call (so it counts training steps inside `model.fit`, once per
batch, as long as the layer is called once per step).

Example (Keras 3; `import tf_keras as keras` with TF_USE_LEGACY_KERAS=1):

  x = keras.Input((32, 32, 3))
  y = keras.layers.Conv2D(16, 3)(x)
  y = LogisticSigmoidGating(name='gate1')(keras.layers.ReLU()(y))
"""

import numbers
from typing import Any, Callable, Optional

import tensorflow as tf

from morph_net.compat import keras as compat
from morph_net.probabilistic_gating import sampling

keras = compat.get_keras()

__all__ = [
    'LogisticSigmoidGating', 'add_gating_to_fn', 'gated_batch_norm',
    'gated_relu_activation', 'logistic_sigmoid_gating', 'compute_mask',
]

# The original's name of the graph-mode sampler.
_logistic_sigmoid_sample = sampling.logistic_sigmoid_sample
compute_mask = sampling.compute_mask


def _in_tf1_graph():
  """Whether ops go to a tf.compat.v1 graph (not eager, not a tf.function)."""
  return (not tf.executing_eagerly() and
          not tf.compat.v1.get_default_graph().building_function)


def _resolve_training(is_training):
  """`is_training`, with None meaning True in a tf.compat.v1 graph.

  None lets Keras decide (training inside `fit`); a TF1 graph has no such
  caller, and the original's default there was True.
  """
  if is_training is None and _in_tf1_graph():
    return True
  return is_training


def _annealed_temperature(temperature, annealing_rate, step):
  if not annealing_rate or step is None:
    return tf.constant(temperature, tf.float32)
  step = tf.cast(step, tf.float32)
  return temperature * tf.pow(0.1, step / float(annealing_rate))


def _serialize_initializer(initializer):
  if initializer is None or isinstance(initializer, numbers.Number):
    return initializer
  return keras.initializers.serialize(keras.initializers.get(initializer))


@keras.saving.register_keras_serializable(package='morph_net')
class LogisticSigmoidGating(keras.layers.Layer):
  """Multiplies the input by a learned stochastic 0/1 gate per channel.

  Args:
    axis: the channel axis (default -1). MorphNet's graph analysis expects
      channels last; other axes work as a layer but are not regularized.
    temperature: temperature of the relaxed Bernoulli sample (lower is closer
      to a hard 0/1 sample).
    straight_through: during training, forward the hard sample (exactly 0 or
      1) and back-propagate the gradient of the relaxed sample.
    log_odds_init: initial log-odds, a number or a Keras initializer (name,
      config or instance). Positive values start the gates open.
    soft_mask_for_inference: at inference multiply the hard mask by
      sigmoid(log_odds).
    keep_first_channel_alive: channel 0 is always open, so no layer is
      disconnected by accident.
    annealing_rate: if set, the temperature decays 10x every `annealing_rate`
      steps of `global_step` (or of the layer's own `step` counter).
    global_step: optional scalar variable (for example
      `optimizer.iterations`) or callable returning one; not serialized.
    seed: optional op seed of the noise.
    **kwargs: Keras layer arguments (name, dtype, ...).

  Raises:
    ValueError: for a non-positive temperature or annealing rate.
  """

  def __init__(self,
               axis: int = -1,
               temperature: float = 0.001,
               straight_through: bool = False,
               log_odds_init: Any = 2.5,
               soft_mask_for_inference: bool = False,
               keep_first_channel_alive: bool = True,
               annealing_rate: Optional[float] = None,
               global_step=None,
               seed: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    if not temperature or temperature <= 0:
      raise ValueError(
          'Invalid value for argument `temperature`. Expected a positive '
          'number. Received: temperature=%r' % (temperature,))
    if annealing_rate is not None and annealing_rate <= 0:
      raise ValueError(
          'Invalid value for argument `annealing_rate`. Expected a positive '
          'number of steps or None. Received: annealing_rate=%r' %
          (annealing_rate,))
    self.axis = int(axis)
    self.temperature = float(temperature)
    self.straight_through = bool(straight_through)
    self.log_odds_init = log_odds_init
    self.soft_mask_for_inference = bool(soft_mask_for_inference)
    self.keep_first_channel_alive = bool(keep_first_channel_alive)
    self.annealing_rate = annealing_rate
    # A getter, so that Keras does not track the step as a weight of the layer.
    self._global_step_getter = (None if global_step is None else
                                (lambda: global_step))
    self.seed = seed
    self.log_odds = None
    self.step = None

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    rank = input_shape.rank
    axis = self.axis + rank if self.axis < 0 else self.axis
    if rank is None or not 0 <= axis < rank or input_shape[axis] is None:
      raise ValueError(
          'Invalid input for layer %r (LogisticSigmoidGating). Expected a '
          'static size on the channel axis %d. Received: input_shape=%s' %
          (self.name, self.axis, input_shape))
    self._rank, self._channel_axis = rank, axis
    channels = int(input_shape[axis])
    if isinstance(self.log_odds_init, numbers.Number):
      initializer = keras.initializers.Constant(float(self.log_odds_init))
    else:
      initializer = keras.initializers.get(self.log_odds_init)
    # The original's variable name; the attribute keeps this project's name.
    self.log_odds = self.add_weight(
        name='mask_logits', shape=(channels,), initializer=initializer,
        trainable=True, dtype='float32')
    if self.annealing_rate and self._global_step_getter is None:
      self.step = self.add_weight(
          name='step', shape=(), initializer='zeros', trainable=False,
          dtype='int64')
    super().build(input_shape)

  def _get_step(self):
    if self._global_step_getter is None:
      return self.step
    step = self._global_step_getter()
    return step() if callable(step) and not hasattr(step, 'assign') else step

  @property
  def logits(self):
    """The log-odds variable [C] (the original layer's attribute name)."""
    return self.log_odds

  def lead_variables(self) -> list:
    """The variables this gate's regularization value follows: [log_odds].

    The value a MorphNet regularizer reads from a gate is its inference
    mask, exactly 0 or 1: it jumps when a log-odds crosses 0, and says
    nothing before. The log-odds move ahead of it, so a cost target's lead
    is extrapolated on them (and its rescue holds them up); see
    `morph_net.keras.lead`. Raising a log-odds never shuts a gate.

    Returns:
      [the log-odds variable], or [] before the layer is built.
    """
    return [] if self.log_odds is None else [self.log_odds]

  def temperature_at_step(self):
    """Returns the (annealed) training temperature as a float32 tensor."""
    step = self._get_step() if self.annealing_rate else None
    if step is not None:
      step = tf.convert_to_tensor(step)
    return _annealed_temperature(self.temperature, self.annealing_rate, step)

  def _mask(self, training):
    temperature = self.temperature
    if training:
      if self.step is not None:
        self.step.assign_add(1)
      if self.annealing_rate:
        temperature = self.temperature_at_step()
      if _in_tf1_graph():
        return self._original_training_mask(temperature)
    return compute_mask(
        tf.convert_to_tensor(self.log_odds), training, temperature,
        self.straight_through, self.soft_mask_for_inference,
        self.keep_first_channel_alive, self.seed)

  def _original_training_mask(self, temperature):
    """The original's TF1 training mask: one 'LogisticSigmoidGating' op.

    The sample is the output of the graph-function op (first input: the
    mask_logits read), copied by an Identity, then channel 0 forced open; the
    original's source handler and regularizers key on that op.
    """
    sample = _logistic_sigmoid_sample(
        tf.convert_to_tensor(self.log_odds), temperature,
        self.straight_through, seed=self.seed)
    mask = tf.identity(sample)
    if self.keep_first_channel_alive:
      first = tf.one_hot(0, int(self.log_odds.shape[0]), dtype=tf.float32)
      mask = tf.maximum(mask, first)
    return mask

  def get_mask(self, training=False):
    """Returns the [C] mask a call with `training` would apply."""
    return self._mask(bool(training))

  def call(self, inputs, training=None):
    inputs = tf.convert_to_tensor(inputs)
    if isinstance(training, tf.Tensor):
      mask = tf.cond(training, lambda: self._mask(True),
                     lambda: self._mask(False))
    else:
      mask = self._mask(bool(training))
    mask = tf.cast(mask, inputs.dtype)
    if self._channel_axis != self._rank - 1:
      shape = [1] * self._rank
      shape[self._channel_axis] = -1
      mask = tf.reshape(mask, shape)
    return tf.multiply(inputs, mask, name='gated')

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({
        'axis': self.axis,
        'temperature': self.temperature,
        'straight_through': self.straight_through,
        'log_odds_init': _serialize_initializer(self.log_odds_init),
        'soft_mask_for_inference': self.soft_mask_for_inference,
        'keep_first_channel_alive': self.keep_first_channel_alive,
        'annealing_rate': self.annealing_rate,
        'seed': self.seed,
    })
    return config


def logistic_sigmoid_gating(inputs,
                            axis: int = -1,
                            is_training: Optional[bool] = None,
                            temperature: float = 0.001,
                            straight_through: bool = False,
                            log_odds_init: Any = 2.5,
                            soft_mask_for_inference: bool = False,
                            keep_first_channel_alive: bool = True,
                            annealing_rate: Optional[float] = None,
                            global_step=None,
                            scope: Optional[str] = None):
  """Gates `inputs` with a new `LogisticSigmoidGating` layer (functional form).

  The original's argument order. Works on Keras tensors (the layer becomes
  part of the functional model), on eager tensors, and on tensors of a TF1
  graph.

  Args:
    inputs: the tensor to gate.
    axis: the channel axis.
    is_training: True or False fixes the mode for this call site; None lets
      Keras decide (training inside `fit`, inference otherwise), except in a
      tf.compat.v1 graph, where None means True (the original's default).
    temperature: temperature of the relaxed sample.
    straight_through: forward hard samples with relaxed gradients.
    log_odds_init: initial log-odds, number or Keras initializer.
    soft_mask_for_inference: scale the inference mask by the probability
      (the original's default was True; here the inference mask is exactly
      0/1 unless asked).
    keep_first_channel_alive: channel 0 always open.
    annealing_rate: temperature decays 10x every `annealing_rate` steps.
    global_step: optional step variable for the annealing.
    scope: the layer name.

  Returns:
    The gated tensor.
  """
  layer = LogisticSigmoidGating(
      axis=axis, temperature=temperature, straight_through=straight_through,
      log_odds_init=log_odds_init,
      soft_mask_for_inference=soft_mask_for_inference,
      keep_first_channel_alive=keep_first_channel_alive,
      annealing_rate=annealing_rate, global_step=global_step, name=scope)
  is_training = _resolve_training(is_training)
  if is_training is None:
    return layer(inputs)
  return layer(inputs, training=is_training)


def add_gating_to_fn(fn: Callable,
                     gating_fn: Callable = logistic_sigmoid_gating,
                     axis: int = -1,
                     is_training: Optional[bool] = None,
                     **kwargs_for_gating_fn) -> Callable:
  """Returns `fn` followed by a new channel gate at each call.

  Args:
    fn: a callable on tensors (a Keras layer, `tf.nn.relu`, ...).
    gating_fn: called as gating_fn(outputs, axis, is_training, **kwargs);
      default `logistic_sigmoid_gating`.
    axis: the channel axis of fn's output.
    is_training: see `logistic_sigmoid_gating`.
    **kwargs_for_gating_fn: further arguments of `gating_fn` (for example
      log_odds_init, temperature, straight_through, scope).

  Returns:
    A callable `gated_fn(*args, **kwargs)` = gate(fn(*args, **kwargs)).
  """

  def gated_fn(*args, **kwargs):
    outputs = fn(*args, **kwargs)
    return gating_fn(outputs, axis, is_training, **kwargs_for_gating_fn)

  return gated_fn


def gated_relu_activation(gating_fn: Callable = logistic_sigmoid_gating,
                          axis: int = -1,
                          is_training: Optional[bool] = None,
                          **kwargs_for_gating_fn) -> Callable:
  """Returns ReLU followed by a gate, e.g. for `activation=` slots.

  Each call of the returned callable creates a new ReLU layer and a new
  gating layer.

  Args:
    gating_fn: see `add_gating_to_fn`.
    axis: the channel axis.
    is_training: see `logistic_sigmoid_gating`.
    **kwargs_for_gating_fn: see `add_gating_to_fn`.

  Returns:
    A callable on tensors.
  """

  def relu(inputs):
    return keras.layers.ReLU()(inputs)

  return add_gating_to_fn(relu, gating_fn, axis, is_training,
                          **kwargs_for_gating_fn)


def gated_batch_norm(gating_fn: Callable = logistic_sigmoid_gating,
                     axis: int = -1,
                     is_training: Optional[bool] = None,
                     **kwargs_for_gating_fn) -> Callable:
  """Returns batch norm followed by a gate.

  The returned callable takes `(inputs, **batch_norm_kwargs)`; each call
  creates a new `keras.layers.BatchNormalization(**batch_norm_kwargs)` and a
  new gating layer.

  Args:
    gating_fn: see `add_gating_to_fn`.
    axis: the channel axis (of the batch norm and the gate).
    is_training: see `logistic_sigmoid_gating`; also the batch norm's mode.
    **kwargs_for_gating_fn: see `add_gating_to_fn`.

  Returns:
    A callable on tensors.
  """

  def batch_norm(inputs, **batch_norm_kwargs):
    layer = keras.layers.BatchNormalization(axis=axis, **batch_norm_kwargs)
    training = _resolve_training(is_training)
    if training is None:
      return layer(inputs)
    return layer(inputs, training=training)

  return add_gating_to_fn(batch_norm, gating_fn, axis, is_training,
                          **kwargs_for_gating_fn)
