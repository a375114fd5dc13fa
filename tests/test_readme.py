"""The README is tested as documentation.

Every fenced block is Python, shell or text. Python and shell blocks run
(with /tmp/ moved to a test directory) unless an HTML comment right above
says `<!-- not run: why -->`. The block marked `<!-- main job output:
COMMAND -->` quotes what COMMAND prints: the command runs on a tiny budget
and every line it prints in the README's quote has the shape of a quoted
line (same text; numbers, times and paths may differ), and the first line,
which does not depend on training, is the same.
"""

import os
import re
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_README = os.path.join(_ROOT, 'README.md')
_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
_BLOCK = re.compile(
    r'(?:<!-- (not run|main job output): *(.*?) *-->\n)?```(\w*)\n(.*?)```',
    re.S)
_LANGUAGES = ('python', 'sh', 'text')
# The main job on a tiny budget (later flags override the README's).
_TINY = ['--epochs=1', '--train_examples=256', '--batch_size=64',
         '--finetune_epochs=1', '--latency_repeats=3']
_JOB_DIR = 'morph_net_fashion_mnist'


def _blocks():
  """[(marker, marker text, language, code)] of the README's fenced blocks."""
  with open(_README) as f:
    return _BLOCK.findall(f.read())


def _runnable(language):
  return [i for i, (marker, _, lang, _) in enumerate(_blocks())
          if lang == language and marker != 'not run']


def _env():
  return dict(os.environ, CUDA_VISIBLE_DEVICES='',
              PYTHONPATH=_ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                             ''))


def _main_job_block():
  marked = [b for b in _blocks() if b[0] == 'main job output']
  assert len(marked) == 1, 'one block quotes the main job'
  return marked[0]


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('readme')


@pytest.fixture(scope='module')
def main_job(run_dir):
  """Runs the README's main job command on a tiny budget; its stdout."""
  if not os.path.exists(_FASHION_MNIST):
    pytest.skip('needs dataset-fashion-mnist (scripts/install.sh)')
  command = _main_job_block()[1].replace('/tmp/', str(run_dir) + '/').split()
  assert command[:2] == ['python3', 'examples/fashion_mnist_keras.py']
  result = subprocess.run(
      [sys.executable] + command[1:] + _TINY +
      ['--output_dir=%s/%s' % (run_dir, _JOB_DIR)], cwd=_ROOT, env=_env(),
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _code_for(index, request):
  _, _, _, code = _blocks()[index]
  run_dir = request.getfixturevalue('run_dir')
  if _JOB_DIR in code:  # Reads what the main job wrote.
    request.getfixturevalue('main_job')
  return code.replace('/tmp/', str(run_dir) + '/')


def test_every_block_is_known_and_run_or_says_why():
  blocks = _blocks()
  assert len(blocks) >= 10
  for marker, text, language, code in blocks:
    assert language in _LANGUAGES, code[:200]
    if marker == 'not run':
      assert language in ('python', 'sh') and len(text) > 20, code[:200]


@pytest.mark.parametrize('index', _runnable('python'))
def test_readme_python_block_runs(index, request):
  code = _code_for(index, request)
  result = subprocess.run([sys.executable, '-c', code], cwd=_ROOT,
                          env=_env(), capture_output=True, text=True,
                          timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize('index', _runnable('sh'))
def test_readme_shell_block_runs(index, request):
  code = _code_for(index, request)
  result = subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', code],
                          cwd=_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]


_NUMBER = r'-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?:ms|us|s)?'
_TOKEN = re.compile(r'(/\S+)|(%s)' % _NUMBER)


def _shape(line):
  """A regex matching `line` with other numbers, times and paths."""
  parts, end = [], 0
  for match in _TOKEN.finditer(line):
    parts.append(re.escape(line[end:match.start()]))
    parts.append(r'\S+' if match.group(1) else _NUMBER)
    end = match.end()
  parts.append(re.escape(line[end:]))
  return re.compile(''.join(parts) + '$')


def test_main_job_prints_what_the_readme_quotes(main_job):
  quoted = [l for l in _main_job_block()[3].splitlines() if l.strip()]
  printed = [l for l in main_job.splitlines() if l.strip()]
  assert printed[0] == quoted[0]  # Initial cost and strength: no training.
  shapes = [_shape(line) for line in quoted]
  for line in printed:
    assert any(shape.match(line) for shape in shapes), line
  # Every kind of quoted line but Keras's 'Epoch i/n' header (not printed
  # for a single epoch) is printed.
  for line, shape in zip(quoted, shapes):
    if not line.startswith('Epoch '):
      assert any(shape.match(l) for l in printed), line
