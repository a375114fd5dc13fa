"""The regular suite fails when `bazel test --config=offline //tests/...` would.

Without Bazel (it is not installed in CI), bazel_guard.py evaluates the BUILD
files and checks that every tests/**/test_*.py is a test target, that the
repository files each test opens, runs or imports are in that target's
runfiles, and that the Bazel commands in the docs name targets that exist.
The checks run on this source tree (they skip under Bazel, whose runfiles
hold no BUILD files) and on small workspaces built with the real
build_defs/pytest.bzl, where a deliberately broken dependency is caught.
"""

import os
import posixpath

import pytest

import bazel_guard
import morph_net

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_UNDER_BAZEL = 'TEST_SRCDIR' in os.environ
source_tree_only = pytest.mark.skipif(
    _UNDER_BAZEL, reason='checks the source tree; Bazel runfiles hold no '
    'BUILD files (python3 -m pytest runs it)')

_ADD_READS = ('which is not in its runfiles: add the label that brings it to '
              'reads= of pytest_directory() in tests/BUILD')


def _line_of(path, text):
  """1-based number of the first line of `path` containing `text`."""
  with open(os.path.join(_ROOT, path)) as f:
    for number, line in enumerate(f, 1):
      if text in line:
        return number
  raise AssertionError('%r not in %s' % (text, path))


# --- this source tree --------------------------------------------------------


@pytest.fixture(scope='module')
def workspace():
  return bazel_guard.Workspace(bazel_guard.Tree(_ROOT))


@source_tree_only
def test_every_test_file_is_a_test_target(workspace):
  assert bazel_guard.check_tests_are_targets(workspace) == []
  tests = {t.label for t in workspace.tests()}
  assert '//tests:test_readme' in tests
  assert '//tests/bazel:test_bazel_build' in tests
  assert '//tests/surgery:test_rebuild' in tests
  assert workspace.targets['//tests/keras:test_model_zoo'].attrs[
      'shard_count'] == 4


@source_tree_only
def test_every_file_a_test_reads_is_in_its_runfiles(workspace):
  assert bazel_guard.check_reads_in_runfiles(workspace) == []


@source_tree_only
def test_bazel_commands_in_the_docs_name_existing_targets(workspace):
  assert bazel_guard.check_doc_commands(workspace) == []


@source_tree_only
def test_a_test_carries_only_the_repository_files_it_reads(workspace):
  readme = workspace.runfiles('//tests:test_readme')
  assert {  # bazel_guard: not a read (the source tree's runfiles)
      'README.md', 'examples/fashion_mnist_keras.py',
          'examples/configs/gamma_flops.gin', 'tests/test_readme.py',
          'build_defs/pytest_main.py', 'morph_net/__init__.py'} <= readme
  slim = workspace.runfiles('//tests/compat:test_slim')
  assert 'tests/compat/test_slim.py' in slim  # bazel_guard: not a read
  assert not [f for f in slim if f == 'README.md' or f.startswith(
      ('examples/', 'docs/')) or posixpath.basename(f) == 'BUILD']


@source_tree_only
def test_the_readme_test_without_its_reads_fails(workspace):
  build = workspace.build_file('tests')
  text = workspace.tree.read(build)
  entry = '"test_readme.py": ["//:docs", "//examples"],'
  assert entry in text
  broken = bazel_guard.Workspace(bazel_guard.Tree(
      _ROOT, {build: text.replace(entry, '')}))
  problems = bazel_guard.check_reads_in_runfiles(
      broken, labels={'//tests:test_readme'})
  readme_test = 'tests/test_readme.py'  # bazel_guard: not a read (source)
  readme_line = _line_of(readme_test, "'README.md')")
  example_line = _line_of(readme_test, "'examples/fashion_mnist_keras.py'")
  assert [p.split(' (')[0] for p in problems] == [
      '//tests:test_readme reads README.md',
      '//tests:test_readme reads examples/datasets.py',
      '//tests:test_readme reads examples/fashion_mnist_keras.py',
  ]
  assert problems[0] == (
      '//tests:test_readme reads README.md (tests/test_readme.py:%d), %s'
      % (readme_line, _ADD_READS))
  assert problems[2] == (
      '//tests:test_readme reads examples/fashion_mnist_keras.py '
      '(tests/test_readme.py:%d), %s' % (example_line, _ADD_READS))
  assert problems[1].startswith(
      '//tests:test_readme reads examples/datasets.py '
      '(examples/fashion_mnist_keras.py:')


@source_tree_only
def test_a_test_directory_without_build_file_fails():
  tree = bazel_guard.Tree(_ROOT, {
      'tests/newdir/test_new.py': 'def test_new():\n  pass\n'})
  assert bazel_guard.check_tests_are_targets(bazel_guard.Workspace(tree)) == [
      'tests/newdir/test_new.py is no test target (a BUILD file calling '
      'pytest_directory() in its directory makes it one)']


@source_tree_only
def test_a_documented_target_that_does_not_exist_fails():
  tree = bazel_guard.Tree(_ROOT, {'docs/NEW.md': (
      'Run one file:\n\n```\n'
      'bazel test --config=offline //tests/tools:test_rebuild   # moved\n'
      'bazel test --config=offline //tests/surgery:test_rebuild\n```\n')})
  problems = bazel_guard.check_doc_commands(bazel_guard.Workspace(tree))
  assert problems == [
      'docs/NEW.md:4: `bazel test //tests/tools:test_rebuild`: no target '
      'test_rebuild in tests/tools/BUILD']


def test_morph_net_is_imported_from_this_tree():
  # Under Bazel: from the runfiles, not from an installed (editable) copy.
  assert os.path.abspath(morph_net.__file__) == os.path.join(
      _ROOT, 'morph_net', '__init__.py')


# --- a small workspace with the real macros ----------------------------------

_TEST_RUNS_TOOL = '''import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tool_runs(tmp_path):
  subprocess.run([sys.executable, os.path.join(_ROOT, 'tool', 'run.py'),
                  str(tmp_path)], check=True)
'''
_TEST_IMPORTS_TOOL = 'from tool import helper\n\n\ndef test_helper():\n  pass\n'
_TEST_RUNS_MODULE = '''import subprocess
import sys


def test_module():
  subprocess.run([sys.executable, '-m', 'tool.helper'], check=True)
'''
_TEST_PLAIN = '''import os


def test_plain(tmp_path):
  # A path under tmp_path, not a repository file.
  assert not os.path.exists(os.path.join(tmp_path, 'tool', 'run.py'))
'''
_RUN = '''import os

CONFIG = os.path.join(os.path.dirname(__file__), 'configs', 'small.gin')
'''
_ALL_READS = ('{"test_runs_tool.py": ["//tool"], '
              '"test_imports_tool.py": ["//tool"], '
              '"test_runs_module.py": ["//tool"]}')


def _small_workspace(root, reads=_ALL_READS, tool_data='glob(["configs/**"])',
                     notes='', extra=None):
  """Writes a workspace using build_defs/pytest.bzl; its Workspace."""
  with open(os.path.join(_ROOT, 'build_defs/pytest.bzl')) as f:
    pytest_bzl = f.read()
  files = {  # bazel_guard: not a read (paths in `root`)
      'WORKSPACE': 'workspace(name = "demo")\n',
      'BUILD': ('exports_files(["docs/NOTES.md"])\n'
                'filegroup(name = "pytest_config", srcs = glob('
                '["conftest.py"], allow_empty = True))\n'),
      'docs/NOTES.md': notes,
      'build_defs/BUILD': (
          'exports_files(["pytest.bzl"])\n'
          'genrule(name = "pytest_main_gen", outs = ["pytest_main.py"], '
          'cmd = "touch $@")\n'),
      'build_defs/pytest.bzl': pytest_bzl,
      'morph_net/BUILD': ('py_library(name = "morph_net", srcs = '
                          'glob(["*.py"]), imports = [".."])\n'),
      'morph_net/__init__.py': '',
      'tool/BUILD': (
          'py_library(name = "tool", srcs = glob(["**/*.py"]), data = %s)\n'
          'py_binary(name = "run", srcs = ["run.py"], deps = [":tool"])\n'
          % tool_data),
      'tool/run.py': _RUN,
      'tool/helper.py': '',
      'tool/configs/small.gin': 'x = 1\n',
      'tests/BUILD': (
          'load("//build_defs:pytest.bzl", "pytest_directory")\n\n'
          'pytest_directory(parent_support = None, reads = %s)\n' % reads),
      'tests/test_runs_tool.py': _TEST_RUNS_TOOL,
      'tests/test_imports_tool.py': _TEST_IMPORTS_TOOL,
      'tests/test_runs_module.py': _TEST_RUNS_MODULE,
      'tests/test_plain.py': _TEST_PLAIN,
  }
  files.update(extra or {})
  for path, text in files.items():
    full = os.path.join(str(root), path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as f:
      f.write(text)
  return bazel_guard.Workspace(bazel_guard.Tree(str(root)))


def _missing(label, path, where):
  return '%s reads %s (%s), %s' % (label, path, where, _ADD_READS)


def test_small_workspace_with_its_reads_passes(tmp_path):
  workspace = _small_workspace(tmp_path)
  assert bazel_guard.check(workspace.tree) == []
  assert sorted(t.label for t in workspace.tests()) == [
      '//tests:test_imports_tool', '//tests:test_plain',
      '//tests:test_runs_module', '//tests:test_runs_tool']
  assert workspace.runfiles('//tests:test_runs_tool') == {
      'tests/test_runs_tool.py', 'build_defs/pytest_main.py',
      'morph_net/__init__.py', 'tool/run.py', 'tool/helper.py',
      'tool/configs/small.gin'}
  assert workspace.runfiles('//tests:test_plain') == {
      'tests/test_plain.py', 'build_defs/pytest_main.py',
      'morph_net/__init__.py'}


def test_a_test_that_runs_an_undeclared_script_fails(tmp_path):
  workspace = _small_workspace(tmp_path, reads=(
      '{"test_imports_tool.py": ["//tool"], '
      '"test_runs_module.py": ["//tool"]}'))
  assert bazel_guard.check_reads_in_runfiles(workspace) == [
      _missing('//tests:test_runs_tool', 'tool/configs/small.gin',
               'tool/run.py:3'),
      _missing('//tests:test_runs_tool', 'tool/run.py',
               'tests/test_runs_tool.py:9'),
  ]


def test_imports_and_modules_run_with_dash_m_are_reads(tmp_path):
  workspace = _small_workspace(tmp_path, reads='{"test_runs_tool.py": '
                               '["//tool"]}')
  assert bazel_guard.check_reads_in_runfiles(workspace) == [
      _missing('//tests:test_imports_tool', 'tool/helper.py',
               'tests/test_imports_tool.py:1'),
      _missing('//tests:test_runs_module', 'tool/helper.py',
               'tests/test_runs_module.py:6'),
  ]


def test_a_library_that_drops_the_files_its_script_reads_fails(tmp_path):
  workspace = _small_workspace(tmp_path, tool_data='[]')
  assert bazel_guard.check_reads_in_runfiles(workspace) == [
      _missing('//tests:test_runs_tool', 'tool/configs/small.gin',
               'tool/run.py:3')]


def test_a_test_directory_without_build_is_no_target(tmp_path):
  workspace = _small_workspace(tmp_path, extra={
      'tests/sub/test_sub.py': 'def test_sub():\n  pass\n'})
  assert bazel_guard.check_tests_are_targets(workspace) == [
      'tests/sub/test_sub.py is no test target (a BUILD file calling '
      'pytest_directory() in its directory makes it one)']


def test_reads_of_a_file_that_is_no_test_fails_like_bazel(tmp_path):
  with pytest.raises(bazel_guard.BuildError,
                     match=r'^pytest_directory\(reads=\.\.\.\): no test file '
                     r'test_gone\.py$'):
    _small_workspace(tmp_path, reads='{"test_gone.py": ["//tool"]}')


def test_a_read_label_that_names_nothing_fails(tmp_path):
  workspace = _small_workspace(tmp_path, reads='{"test_plain.py": '
                               '["//tool:nothing"]}')
  with pytest.raises(bazel_guard.BuildError,
                     match=r'^//tool:nothing \(in //tests\) names no target$'):
    workspace.runfiles('//tests:test_plain')


def test_docs_commands_are_checked(tmp_path):
  notes = (
      '```sh\n'
      'bazel test --config=offline //tests/...\n'
      'bazel test --config=offline //tests:test_plain  # one file\n'
      'bazel query \'tests(//tests/...)\'\n'
      'bazel run //tool:run -- --help\n'
      'bazel test //tests:test_missing\n'
      'bazel run //tool\n'
      'bazel test //tool/...\n'
      'bazel build --config=nope //nowhere/...\n'
      '```\n'
      'The `//tool` library and `//tool:gone`.\n')
  workspace = _small_workspace(tmp_path, notes=notes, extra={
      '.bazelrc': 'build:offline --jobs=1\n'})
  assert bazel_guard.check_doc_commands(workspace) == [
      'docs/NOTES.md:6: `bazel test //tests:test_missing`: no target '
      'test_missing in tests/BUILD',
      'docs/NOTES.md:7: `bazel run //tool`: not an executable target',
      'docs/NOTES.md:8: `bazel test //tool/...`: no test target under '
      '//tool',
      'docs/NOTES.md:9: `bazel build --config=nope`: no such config in '
      '.bazelrc',
      'docs/NOTES.md:9: `bazel build //nowhere/...`: no package at or '
      'under //nowhere',
      'docs/NOTES.md:11: //tool:gone: no target gone in tool/BUILD',
  ]


def test_globs_follow_bazel(tmp_path):
  workspace = _small_workspace(tmp_path, extra={
      'tool/sub/BUILD': '',
      'tool/sub/inner.py': '',
      'tool/deep/er/x.py': ''})
  # '**' spans directories but not into another package (tool/sub).
  assert workspace.glob('tool', ['**/*.py']) == [
      'deep/er/x.py', 'helper.py', 'run.py']
  assert workspace.glob('tool', ['*'], exclude=['BUILD']) == [
      'helper.py', 'run.py']
  assert workspace.glob('tool', ['configs/**']) == ['configs/small.gin']
  assert workspace.glob('tool/sub', ['**']) == ['BUILD', 'inner.py']
