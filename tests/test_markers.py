"""The markers of tests/conftest.py name real tests and follow its rules.

These read every test file of the source tree; under Bazel, whose runfiles
of this test hold none of them, they skip (python3 -m pytest runs them).
"""

import ast
import importlib.util
import os

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))


def _root_conftest():
  """tests/conftest.py as a module of its own (`import conftest` may give
  another directory's conftest.py, which pytest imported first)."""
  spec = importlib.util.spec_from_file_location(
      'morph_net_tests_conftest', os.path.join(_TESTS, 'conftest.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


conftest = _root_conftest()
pytestmark = pytest.mark.skipif(
    'TEST_SRCDIR' in os.environ, reason='reads the source tree\'s test '
    'files; Bazel runfiles hold only this test\'s (python3 -m pytest runs '
    'it)')
# Calls that start another program: subprocess.<these>, and helpers that do
# (morph_net.testing.slim_nets, tests/doc_blocks.py).
_STARTS = frozenset(['run', 'Popen', 'check_call', 'check_output', 'call'])
_HELPERS = frozenset(['run_in_subprocess', 'run_python', 'run_shell',
                      'main_job_output'])


def _test_files():
  files = []
  for directory, _, names in os.walk(_TESTS):
    for name in names:
      if name.startswith('test_') and name.endswith('.py'):
        files.append(os.path.relpath(os.path.join(directory, name),
                                     _TESTS).replace(os.sep, '/'))
  return sorted(files)


def _tree(path):
  with open(os.path.join(_TESTS, path)) as f:
    return ast.parse(f.read())


def _definitions(path):
  """{'test', 'Class', 'Class::test'} defined at the top of a test file."""
  names = set()
  for node in _tree(path).body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
      names.add(node.name)
    if isinstance(node, ast.ClassDef):
      names.update('%s::%s' % (node.name, child.name) for child in node.body
                   if isinstance(child, ast.FunctionDef))
  return names


def _starts_a_program(path):
  for node in ast.walk(_tree(path)):
    if isinstance(node, ast.Call):
      function = node.func
      name = (function.attr if isinstance(function, ast.Attribute) else
              getattr(function, 'id', None))
      owner = (getattr(function.value, 'id', None)
               if isinstance(function, ast.Attribute) else None)
      if name in _HELPERS or (owner == 'subprocess' and name in _STARTS):
        return True
  return False


def test_every_entry_names_a_test_file_and_a_test_of_it():
  files = set(_test_files())
  for path, entry in conftest.MARKED.items():
    assert path in files, path
    for name, markers in entry.items():
      if name:
        assert name.split('[', 1)[0] in _definitions(path), (path, name)
      assert markers and set(markers) <= set(conftest.MARKERS), (path, name)


@pytest.mark.parametrize('path', _test_files())
def test_a_file_that_starts_a_program_is_marked_subprocess(path):
  if _starts_a_program(path):
    marked = [name for name, markers in conftest.MARKED.get(path, {}).items()
              if 'subprocess' in markers]
    assert marked, path


def _slow(path, name):
  return 'slow' in conftest.markers_of(path, name.split('::'))


def test_every_file_keeps_a_test_that_is_not_slow():
  for path in _test_files():
    tests = [name for name in _definitions(path)
             if name.rpartition('::')[2].startswith('test_') and
             name.rpartition('::')[2] != 'test_session']
    quick = [name for name in tests if not _slow(path, name)]
    assert bool(quick) != (path in conftest.ALL_SLOW), (path, tests)


def test_zoo_tests_are_slow_and_keys_resolve():
  for path, entry in conftest.MARKED.items():
    for name, markers in entry.items():
      if 'zoo' in markers:
        assert 'slow' in markers, (path, name)
  assert conftest.keys_of(['test_c[keras3]']) == ['', 'test_c',
                                                  'test_c[keras3]']
  assert conftest.keys_of(['Case', 'test_c']) == ['', 'Case', 'Case::test_c']
