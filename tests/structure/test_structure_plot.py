"""Tests for morph_net.structure.structure_plot."""

import os
import sys

import matplotlib
import pytest

from morph_net import errors
from morph_net.structure import structure_plot


def test_writes_png_atomically(tmp_path):
  path = str(tmp_path / 'sub' / 'w.png')
  out = structure_plot.plot_structures(
      {'conv1': 32, 'conv2': 64}, {'conv1': 12, 'conv2': 0, 'fc': 3}, path)
  assert out == path
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert [n for n in os.listdir(tmp_path / 'sub')] == ['w.png']
  assert matplotlib.get_backend().lower() == 'agg'


def test_empty_structure_raises(tmp_path):
  with pytest.raises(ValueError, match='at least one layer'):
    structure_plot.plot_structures({}, {}, str(tmp_path / 'x.png'))


def test_missing_matplotlib_is_named(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'matplotlib', None)
  with pytest.raises(errors.MissingDependencyError,
                     match='needs matplotlib, which is not installed: pip '
                     'install matplotlib'):
    structure_plot.plot_structures({'a': 1}, {'a': 1},
                                   str(tmp_path / 'x.png'))
