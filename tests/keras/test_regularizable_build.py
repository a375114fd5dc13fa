"""regularizable.build_regularizer: which blacklist error means "our
exclusions are in no group" is read from the error's `unused_regex`, never
from its message."""

import numpy as np
import pytest
import tensorflow as tf

from morph_net import errors
from morph_net.keras import regularizable
from morph_net.network_regularizers import flop_regularizer

OURS = regularizable.blacklist_regex(['m/logits_1/MatMul'])


class FakeTraced(object):
  """Records the blacklists it is built with; raises the queued errors."""

  def __init__(self, *errors_to_raise):
    self.errors = list(errors_to_raise)
    self.blacklists = []

  def build_regularizer(self, regularizer_class, regularizer_blacklist=None,
                        **unused_kwargs):
    del regularizer_class
    self.blacklists.append(list(regularizer_blacklist))
    if self.errors:
      raise self.errors.pop(0)
    return 'built'


def _unused(regex, message=None):
  error = errors.InvalidArgumentError(
      message or 'Blacklist regex never used: %r.' % regex)
  error.unused_regex = regex
  return error


def _build(traced):
  excluded = regularizable.ExcludedOps(['m/logits_1/MatMul'], {})
  return regularizable.build_regularizer(
      traced, flop_regularizer.GammaFlopsRegularizer, excluded,
      {'regularizer_blacklist': ['^user/']})


def test_our_unused_regex_builds_again_without_it():
  traced = FakeTraced(_unused(OURS))
  assert _build(traced) == 'built'
  assert traced.blacklists == [['^user/', OURS], ['^user/']]


def test_the_users_unused_regex_stands_even_if_its_message_names_ours():
  # The message quotes our regex (the old text test would have swallowed
  # it); the attribute says the user's regex is the unused one.
  error = _unused('^user/', message='never used: %r, not %r' % ('^user/',
                                                                 OURS))
  traced = FakeTraced(error)
  with pytest.raises(errors.InvalidArgumentError) as raised:
    _build(traced)
  assert raised.value is error
  assert traced.blacklists == [['^user/', OURS]]


def test_other_invalid_argument_errors_stand():
  error = errors.InvalidArgumentError('Invalid value %r' % OURS)
  traced = FakeTraced(error)
  with pytest.raises(errors.InvalidArgumentError) as raised:
    _build(traced)
  assert raised.value is error
  assert traced.blacklists == [['^user/', OURS]]


def test_the_manager_error_carries_the_unused_regex():
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 2])
    kernel = tf.constant(np.ones([1, 1, 2, 3], np.float32))
    y = tf.nn.conv2d(x, kernel, 1, 'SAME', name='conv')
    with pytest.raises(errors.InvalidArgumentError) as raised:
      flop_regularizer.GroupLassoFlopsRegularizer(
          [y.op], threshold=1e-3, input_boundary=[x.op],
          regularizer_blacklist=['^conv$', '^missing/'])
  assert str(raised.value) == "Blacklist regex never used: '^missing/'."
  assert raised.value.unused_regex == '^missing/'
