"""atomic_file: whole new file or the old one, no temp files left behind."""

import json
import os

import pytest

from morph_net.structure import atomic_file


def test_write_json_creates_directory_and_sorted_json(tmp_path):
  path = str(tmp_path / 'a' / 'b' / 'x.json')
  atomic_file.write_json_atomically({'b': 2, 'a': 1}, path)
  with open(path) as f:
    text = f.read()
  assert text == '{\n  "a": 1,\n  "b": 2\n}'
  assert json.loads(text) == {'a': 1, 'b': 2}
  assert os.listdir(os.path.dirname(path)) == ['x.json']


def test_overwrite_replaces_content(tmp_path):
  path = str(tmp_path / 'x.txt')
  atomic_file.write_text_atomically('old', path)
  atomic_file.write_text_atomically('new', path)
  with open(path) as f:
    assert f.read() == 'new'


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
  path = str(tmp_path / 'x.txt')
  atomic_file.write_text_atomically('old', path)
  with pytest.raises(RuntimeError):
    with atomic_file.atomic_write(path) as f:
      f.write('partial')
      raise RuntimeError('interrupted')
  with open(path) as f:
    assert f.read() == 'old'
  assert os.listdir(str(tmp_path)) == ['x.txt']


def test_binary_mode(tmp_path):
  path = str(tmp_path / 'x.bin')
  with atomic_file.atomic_write(path, binary=True) as f:
    f.write(b'\x89PNG')
  with open(path, 'rb') as f:
    assert f.read() == b'\x89PNG'


def test_mode_follows_umask_like_open(tmp_path):
  path = str(tmp_path / 'x.txt')
  old = os.umask(0o022)
  try:
    atomic_file.write_text_atomically('x', path)
  finally:
    os.umask(old)
  assert os.stat(path).st_mode & 0o777 == 0o644


def test_atomic_path_keeps_the_ending_and_renames(tmp_path):
  target = str(tmp_path / 'sub' / 'small.weights.h5')
  with atomic_file.atomic_path(target) as path:
    assert path.endswith('.weights.h5') and os.path.dirname(path) == (
        os.path.dirname(target))
    with open(path, 'w') as f:
      f.write('data')
    assert not os.path.exists(target)
  assert open(target).read() == 'data'
  assert os.listdir(os.path.dirname(target)) == ['small.weights.h5']


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
  target = str(tmp_path / 'small.keras')
  with pytest.raises(RuntimeError):
    with atomic_file.atomic_path(target) as path:
      with open(path, 'w') as f:
        f.write('partial')
      raise RuntimeError('interrupted')
  assert os.listdir(tmp_path) == []
