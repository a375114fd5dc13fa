"""tf_slim imports next to TF 2.21, and a missing dependency says how to fix it."""

import sys

import pytest

from morph_net import errors
from morph_net.compat import slim


def test_import_slim_builds_slim_nets():
  tf_slim = slim.import_slim()
  from tf_slim.nets import resnet_v1  # pylint: disable=g-import-not-at-top
  assert tf_slim.__name__ == 'tf_slim'
  assert callable(resnet_v1.resnet_v1_50)


def test_missing_tf_slim_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tf_slim', None)
  with pytest.raises(errors.MissingDependencyError,
                     match=r'TF1 extras need tf_slim.*morph-net\[slim\]'):
    slim.import_slim()


def test_missing_tf_keras_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tf_keras.legacy_tf_layers', None)
  monkeypatch.setitem(sys.modules, 'tf_keras.src.legacy_tf_layers', None)
  with pytest.raises(errors.MissingDependencyError,
                     match=r'tf_slim needs tf_keras.*morph-net\[slim\]'):
    slim.import_slim()
