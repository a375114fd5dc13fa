"""Gate masks: relaxed Bernoulli samples and deterministic inference masks.

A gate is open with probability p = sigmoid(log_odds). A relaxed sample
(logistic-sigmoid trick; Maddison et al. 2017, Jang et al. 2017, and FiGS,
https://arxiv.org/abs/2006.09581) is

  sigmoid((log_odds + L) / tau),  L ~ Logistic(0, 1),

which tends to the Bernoulli sample (log_odds + L > 0) as the temperature tau
goes to 0. Straight-through sampling forwards the hard sample and
back-propagates the gradient of the relaxed one.

Two entry points:
* `compute_mask`, used by the `LogisticSigmoidGating` layer: plain TF ops, the
  same in eager mode, TF1 graphs and traced functions.
* `logistic_sigmoid_sample`, the original library's `_logistic_sigmoid_sample`:
  in a graph the sample is one op of type 'LogisticSigmoidGating' (a graph
  function with inputs log-odds, logistic noise, temperature and the
  straight-through flag, and a relaxed-sample gradient), as the original's
  TF1 graphs had it.
"""

import numbers
from typing import Optional

import tensorflow as tf
from tensorflow.python.framework import function  # pylint: disable=g-direct-tensorflow-import

from morph_net import errors

__all__ = ['GATING_OP_TYPE', 'logistic_noise', 'logistic_sigmoid_sample',
           'compute_mask']

# The op type of a graph-mode sample (the original's op).
GATING_OP_TYPE = 'LogisticSigmoidGating'
# Keeps the uniform sample away from 0 and 1 so the logistic noise is finite.
_EPSILON = 1e-6


def logistic_noise(like: tf.Tensor, seed: Optional[int] = None) -> tf.Tensor:
  """Samples Logistic(0, 1) noise of the shape of `like` (float32).

  Args:
    like: a tensor whose (dynamic) shape the noise takes.
    seed: optional op seed.

  Returns:
    log(u) - log(1 - u) for u uniform in (0, 1).
  """
  uniform = tf.random.uniform(tf.shape(like), _EPSILON, 1.0 - _EPSILON,
                              seed=seed)
  return tf.math.log(uniform) - tf.math.log1p(-uniform)


def _relaxed(log_odds, noise, tau):
  return tf.sigmoid((log_odds + noise) / tau)


def _gating_gradient(log_odds, noise, tau, straight_through, grad):
  """Gradient of the relaxed sample for the graph-function op."""
  del straight_through  # Both modes back-propagate the relaxed sample.
  mask = _relaxed(log_odds, noise, tau)
  gradients = tf.gradients([mask], [log_odds, noise, tau], grad_ys=[grad])
  return gradients + [tf.zeros_like(tau)]


@function.Defun(tf.float32, tf.float32, tf.float32, tf.float32,
                grad_func=function.Defun(tf.float32, tf.float32, tf.float32,
                                         tf.float32, tf.float32)(
                                             _gating_gradient),
                func_name=GATING_OP_TYPE)
def _gating_op(log_odds, noise, tau, straight_through):
  """The graph op: hard sample if straight_through is 1, relaxed if 0."""
  hard = tf.cast(log_odds + noise > 0.0, tf.float32)
  return straight_through * hard + (1.0 - straight_through) * _relaxed(
      log_odds, noise, tau)


def _check_temperature(tau):
  if isinstance(tau, tf.Tensor):
    return
  if not isinstance(tau, numbers.Real) or isinstance(tau, bool):
    raise errors.InvalidArgumentError(
        'Invalid value for argument `tau`. Expected a float or a tf.Tensor. '
        'Received: tau=%r (%s)' % (tau, type(tau).__name__))
  if tau < 0:
    raise errors.InvalidArgumentError(
        'Invalid value for argument `tau`. Expected a non-negative '
        'temperature. Received: tau=%r' % (tau,))


def logistic_sigmoid_sample(logits: tf.Tensor, tau, straight_through: bool,
                            seed: Optional[int] = None) -> tf.Tensor:
  """One relaxed (or straight-through) Bernoulli sample per entry of logits.

  Args:
    logits: float tensor of log-odds log(p / (1 - p)).
    tau: the temperature, a non-negative float or a scalar tensor. With
      tau == 0 the sample is hard and has no gradient (no op is registered).
    straight_through: forward the hard sample, back-propagate the relaxed one.
    seed: optional op seed of the noise.

  Returns:
    The mask, float32, shaped like `logits`. In a graph (TF1 or traced) it is
    the output of one op of type 'LogisticSigmoidGating' whose first input is
    `logits`; eagerly it is computed directly.

  Raises:
    InvalidArgumentError: for a temperature that is not a number or tensor,
      or a negative one.
  """
  _check_temperature(tau)
  logits = tf.cast(logits, tf.float32)
  noise = logistic_noise(logits, seed)
  if not isinstance(tau, tf.Tensor) and tau == 0:
    mask = tf.cast(logits + noise > 0.0, tf.float32, name='gating_mask')
  elif tf.executing_eagerly():
    soft = _relaxed(logits, noise, tf.cast(tau, tf.float32))
    if straight_through:
      hard = tf.cast(logits + noise > 0.0, tf.float32)
      mask = hard + (soft - tf.stop_gradient(soft))
    else:
      mask = soft
  else:
    mask = _gating_op(logits, noise, tf.cast(tau, tf.float32),
                      tf.constant(1.0 if straight_through else 0.0))
  mask.set_shape(logits.shape)
  return mask


def compute_mask(log_odds: tf.Tensor,
                 training: bool,
                 temperature=0.001,
                 straight_through: bool = False,
                 soft_mask_for_inference: bool = False,
                 keep_first_channel_alive: bool = True,
                 seed: Optional[int] = None) -> tf.Tensor:
  """Returns the per-channel gate mask of the `LogisticSigmoidGating` layer.

  Training: a relaxed sample (straight-through: the hard sample with the
  relaxed gradient). Inference: the hard mask log_odds > 0, written
  hard + (p - stop_gradient(p)) so that its value is exactly 0 or 1 and its
  gradient is that of p = sigmoid(log_odds); or hard * p with
  `soft_mask_for_inference`.

  Args:
    log_odds: float vector [C], the log-odds of the gates being open.
    training: Python bool; True samples, False is deterministic.
    temperature: scalar (float or tensor) of the relaxed sample.
    straight_through: forward the hard sample with the relaxed gradient.
    soft_mask_for_inference: multiply the inference mask by sigmoid(log_odds).
    keep_first_channel_alive: force channel 0 open.
    seed: op seed of the logistic noise.

  Returns:
    The mask, float32 [C].
  """
  log_odds = tf.cast(log_odds, tf.float32)
  if training:
    noise = logistic_noise(log_odds, seed)
    soft = tf.sigmoid((log_odds + noise) / temperature, name='relaxed_sample')
    if straight_through:
      hard = tf.cast(soft > 0.5, tf.float32)
      mask = hard + (soft - tf.stop_gradient(soft))
    else:
      mask = soft
  else:
    probability = tf.sigmoid(log_odds, name='probability')
    hard = tf.cast(tf.greater(log_odds, 0.0), tf.float32)
    if soft_mask_for_inference:
      mask = hard * probability
    else:
      mask = hard + (probability - tf.stop_gradient(probability))
  if keep_first_channel_alive:
    channels = log_odds.shape[0]
    if channels is None:
      channels = tf.shape(log_odds)[0]
    first = tf.one_hot(0, channels, dtype=tf.float32)
    mask = tf.maximum(mask, first)
  return tf.identity(mask, name='mask')
