"""Selects Keras 3 or tf_keras (Keras 2) the way TensorFlow does.

With `TF_USE_LEGACY_KERAS=1` TensorFlow's `tf.keras` is tf_keras; MorphNet
follows the same switch so that it works with the user's models either way.
"""

import os


def use_legacy_keras() -> bool:
  """Whether TF_USE_LEGACY_KERAS selects tf_keras."""
  return os.environ.get('TF_USE_LEGACY_KERAS', '').lower() in ('1', 'true',
                                                               'yes')


def get_keras():
  """Returns the keras module in use (keras 3 or tf_keras)."""
  if use_legacy_keras():
    import tf_keras  # pylint: disable=g-import-not-at-top
    return tf_keras
  import keras  # pylint: disable=g-import-not-at-top
  return keras
