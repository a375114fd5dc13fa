"""Imports the Keras the user runs: tf_keras under TF_USE_LEGACY_KERAS=1.

TensorFlow 2.16+ ships Keras 3 as `keras`; setting the environment variable
`TF_USE_LEGACY_KERAS=1` makes `tf.keras` the legacy Keras 2 (`tf_keras`).
Layers defined here must subclass the Layer class of the Keras the model is
built with, so the choice follows the same variable.
"""

import os

__all__ = ['keras', 'IS_LEGACY_KERAS']

IS_LEGACY_KERAS = os.environ.get('TF_USE_LEGACY_KERAS', '').lower() in (
    '1', 'true', 'yes')

if IS_LEGACY_KERAS:
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
else:
  import keras  # pylint: disable=g-import-not-at-top
