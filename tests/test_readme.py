"""The README is tested as documentation.

Every fenced block is Python, shell or text. Python and shell blocks run
(with /tmp/ moved to a test directory) unless an HTML comment right above
says `<!-- not run: why -->`. The block marked `<!-- main job output:
COMMAND -->` quotes what COMMAND prints: the command runs on a tiny budget
and every line it prints in the README's quote has the shape of a quoted
line (same text; numbers, times and paths may differ), and the first line,
which does not depend on training, is the same.

The rule and its helpers are tests/doc_blocks.py's; tests/test_docs.py
applies them to the pages of docs/.
"""

import os

import pytest

import doc_blocks

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_README = os.path.join(_ROOT, 'README.md')
_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def _blocks():
  """[(marker, marker text, language, code)] of the README's fenced blocks."""
  return doc_blocks.blocks(_README)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('readme')


@pytest.fixture(scope='module')
def main_job(run_dir):
  """Runs the README's main job command on a tiny budget; its stdout."""
  if not os.path.exists(_FASHION_MNIST):
    pytest.skip('needs dataset-fashion-mnist (scripts/install.sh)')
  command = doc_blocks.main_job_command(_README, run_dir)
  assert command[:2] == ['python3', 'examples/fashion_mnist_keras.py']
  return doc_blocks.main_job_output(command, _ROOT, run_dir)


def _code_for(index, request):
  _, _, _, code = _blocks()[index]
  run_dir = request.getfixturevalue('run_dir')
  if doc_blocks.uses_main_job(code):  # Reads what the main job wrote.
    request.getfixturevalue('main_job')
  return doc_blocks.in_run_dir(code, run_dir)


def test_every_block_is_known_and_run_or_says_why():
  blocks = _blocks()
  # The two commands, the main job's output, the Keras and TF1 quickstarts;
  # the guides' blocks are in docs/ (tests/test_docs.py).
  assert len(blocks) >= 4
  doc_blocks.check_known(blocks)


@pytest.mark.parametrize('index', doc_blocks.runnable(_README, 'python'))
def test_readme_python_block_runs(index, request):
  doc_blocks.run_python(_code_for(index, request), _ROOT)


@pytest.mark.parametrize('index', doc_blocks.runnable(_README, 'sh'))
def test_readme_shell_block_runs(index, request):
  doc_blocks.run_shell(_code_for(index, request), _ROOT)


def test_main_job_prints_what_the_readme_quotes(main_job):
  quoted = [l for l in doc_blocks.main_job_block(_README)[3].splitlines()
            if l.strip()]
  printed = [l for l in main_job.splitlines() if l.strip()]
  assert printed[0] == quoted[0]  # Initial cost and strength: no training.
  shapes = [doc_blocks.shape(line) for line in quoted]
  for line in printed:
    assert any(shape.match(line) for shape in shapes), line
  # Every kind of quoted line but Keras's 'Epoch i/n' header (not printed
  # for a single epoch) is printed.
  for line, shape in zip(quoted, shapes):
    if not line.startswith('Epoch '):
      assert any(shape.match(l) for l in printed), line
