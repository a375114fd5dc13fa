"""The documentation pages (docs/) are tested as the README is, and built.

Every fenced block of docs/**/*.md follows the README's rule
(tests/doc_blocks.py): Python, shell or text; Python and shell blocks run
(with /tmp/ moved to a test directory) unless `<!-- not run: why -->` is
right above. Blocks that read what the README's main job writes run after
that job, on a tiny budget. `mkdocs build --strict` builds the site from
mkdocs.yml, with the API reference generated from the docstrings: a broken
link, anchor or page left out of the navigation, or a docstring
mkdocstrings cannot read, fails it. The README's links into docs/ resolve.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import unicodedata

import pytest

import doc_blocks

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DOCS = os.path.join(_ROOT, 'docs')
_README = os.path.join(_ROOT, 'README.md')
_MKDOCS_YML = os.path.join(_ROOT, 'mkdocs.yml')
_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'


def _pages():
  """Paths of the markdown pages under docs/, relative to it, sorted."""
  pages = []
  for directory, _, files in os.walk(_DOCS):
    pages += [os.path.relpath(os.path.join(directory, f), _DOCS)
              for f in files if f.endswith('.md')]
  return sorted(pages)


def _runnable(language):
  return [pytest.param(page, index, id='%s:%d' % (page, index))
          for page in _pages()
          for index in doc_blocks.runnable(os.path.join(_DOCS, page),
                                           language)]


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('docs')


@pytest.fixture(scope='module')
def main_job(run_dir):
  """Runs the README's main job command on a tiny budget (what the guides'
  blocks read: the saved model)."""
  if not os.path.exists(_FASHION_MNIST):
    pytest.skip('needs dataset-fashion-mnist (scripts/install.sh)')
  command = doc_blocks.main_job_command(_README, run_dir)
  assert command[:2] == ['python3', 'examples/fashion_mnist_keras.py']
  return doc_blocks.main_job_output(command, _ROOT, run_dir)


def _code_for(page, index, request):
  _, _, _, code = doc_blocks.blocks(os.path.join(_DOCS, page))[index]
  run_dir = request.getfixturevalue('run_dir')
  if doc_blocks.uses_main_job(code):  # Reads what the main job wrote.
    request.getfixturevalue('main_job')
  return doc_blocks.in_run_dir(code, run_dir)


def test_every_page_block_is_known_and_run_or_says_why():
  blocks = {page: doc_blocks.blocks(os.path.join(_DOCS, page))
            for page in _pages()}
  assert 'guides/keras.md' in blocks and 'BUDGET.md' in blocks
  assert sum(len(b) for b in blocks.values()) >= 20
  for page, page_blocks in blocks.items():
    doc_blocks.check_known(page_blocks)
    # Only the README quotes the main job (tests/test_readme.py checks it).
    assert 'main job output' not in [b[0] for b in page_blocks], page


@pytest.mark.parametrize('page, index', _runnable('python'))
def test_docs_python_block_runs(page, index, request):
  doc_blocks.run_python(_code_for(page, index, request), _ROOT)


@pytest.mark.parametrize('page, index', _runnable('sh'))
def test_docs_shell_block_runs(page, index, request):
  doc_blocks.run_shell(_code_for(page, index, request), _ROOT)


def _mkdocs_build(config, site_dir):
  """Runs `mkdocs build --strict` on `config` into `site_dir`."""
  if not all(importlib.util.find_spec(m) for m in ('mkdocs', 'mkdocstrings')):
    pytest.fail('needs mkdocs and mkdocstrings[python]: pip install -e '
                '".[test]" (scripts/install.sh test)')
  return subprocess.run(
      [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--config-file',
       config, '--site-dir', str(site_dir)], cwd=os.path.dirname(config),
      env=doc_blocks.env(_ROOT), capture_output=True, text=True, timeout=600,
      check=False)


# Public names the API reference documents, by page: a heading (an HTML id)
# for each.
_REFERENCE = {
    'keras': ['morph_net.keras.ModelRegularizer',
              'morph_net.keras.CostTargetCallback',
              'morph_net.keras.CostTargetController',
              'morph_net.keras.StructureCost',
              'morph_net.keras.TracedModel',
              'morph_net.keras.StructureExportCallback',
              'morph_net.keras.CostSummaryCallback',
              'morph_net.keras.MorphNetLoss',
              'morph_net.keras.MorphNetMetric',
              'morph_net.keras.is_chief',
              'morph_net.keras.expansion.expand_to_cost',
              'morph_net.keras.expansion.expand_file'],
    'surgery': ['morph_net.surgery.ChannelModel',
                'morph_net.surgery.RebuildPlan',
                'morph_net.surgery.ConfigurableLayers',
                'morph_net.surgery.LayerRule',
                'morph_net.surgery.register_layer_rule',
                'morph_net.surgery.get_layer_rules',
                'morph_net.surgery.rebuild.rebuild'],
    'latency': ['morph_net.latency.calibration.CalibrationSettings',
                'morph_net.latency.calibration.calibrate',
                'morph_net.latency.calibration.measure',
                'morph_net.latency.fit.fit_profile',
                'morph_net.latency.measurement.MeasurementSettings',
                'morph_net.latency.measurement.measure'],
    'network_regularizers': [
        'morph_net.network_regularizers.flop_regularizer.'
        'GammaFlopsRegularizer',
        'morph_net.network_regularizers.flop_regularizer.'
        'GroupLassoFlopsRegularizer',
        'morph_net.network_regularizers.model_size_regularizer.'
        'GammaModelSizeRegularizer',
        'morph_net.network_regularizers.latency_regularizer.'
        'GammaLatencyRegularizer',
        'morph_net.network_regularizers.activation_regularizer.'
        'GammaActivationRegularizer',
        'morph_net.network_regularizers.logistic_sigmoid_regularizer.'
        'LogisticSigmoidFlopsRegularizer',
        'morph_net.network_regularizers.resource_regularizer.'
        'ResourceRegularizer',
        'morph_net.network_regularizers.hardware.get_hardware'],
    'structure': ['morph_net.structure.structure_files',
                  'morph_net.structure.width_multiplier.multiply',
                  'morph_net.structure.structure_plot.plot_structures'],
    'tools': ['morph_net.tools.structure_exporter.StructureExporter',
              'morph_net.tools.configurable_ops.ConfigurableOps',
              'morph_net.tools.export_structure',
              'morph_net.tools.expand_structure',
              'morph_net.tools.rebuild_model'],
    'errors': ['morph_net.errors.Error', 'morph_net.errors.StructureError',
               'morph_net.errors.InvalidArgumentError'],
}


def test_mkdocs_builds_the_site_and_the_reference_strictly(tmp_path):
  result = _mkdocs_build(_MKDOCS_YML, tmp_path / 'site')
  assert result.returncode == 0, result.stderr[-5000:]
  for page, names in _REFERENCE.items():
    with open(tmp_path / 'site' / 'reference' / page / 'index.html') as f:
      html = f.read()
    missing = [n for n in names if 'id="%s"' % n not in html]
    assert not missing, (page, missing)
  for page in _pages():  # Every page is built (and so in the navigation).
    built = os.path.splitext(page)[0]
    built = 'index.html' if built == 'index' else built + '/index.html'
    assert (tmp_path / 'site' / built).is_file(), page


def test_a_broken_link_anchor_or_docstring_fails_the_strict_build(tmp_path):
  copy = tmp_path / 'copy'
  shutil.copytree(_DOCS, copy / 'docs')
  shutil.copy(_MKDOCS_YML, copy / 'mkdocs.yml')
  os.symlink(os.path.join(_ROOT, 'morph_net'), copy / 'morph_net')
  with open(copy / 'docs' / 'layout.md', 'a') as f:
    f.write('\n[gone](guides/gone.md), [no such heading](analysis.md#gone)\n')
  with open(copy / 'broken_doc.py', 'w') as f:
    f.write('def f(a):\n  """Does.\n\n  Args:\n    a: one.\n    b: two.\n  """\n')
  with open(copy / 'docs' / 'reference' / 'errors.md', 'a') as f:
    f.write('\n::: broken_doc\n')
  result = _mkdocs_build(str(copy / 'mkdocs.yml'), tmp_path / 'site')
  output = result.stdout + result.stderr
  assert result.returncode == 1, output[-3000:]
  assert ("Doc file 'layout.md' contains a link 'guides/gone.md', but the "
          "target is not found among documentation files.") in output
  assert ("Doc file 'layout.md' contains a link 'analysis.md#gone', but the "
          "doc 'analysis.md' does not contain an anchor '#gone'.") in output
  assert ("broken_doc.py:6: Parameter 'b' does not appear in the function "
          "signature") in output
  assert 'Aborted with 3 warnings in strict mode!' in output


def _slug(heading):
  """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
  text = unicodedata.normalize('NFKD', heading.replace('`', ''))
  text = re.sub(r'[^\w\s-]', '', text).strip().lower()
  return re.sub(r'[-\s]+', '-', text)


def test_the_readme_links_into_docs_resolve():
  with open(_README) as f:
    links = re.findall(r'\]\(([^)#\s]+)(?:#([^)\s]+))?\)', f.read())
  local = [(path, anchor) for path, anchor in links
           if not path.startswith(('http://', 'https://'))]
  assert len(local) >= 10
  for path, anchor in local:
    target = os.path.join(_ROOT, path)
    assert os.path.isfile(target), path
    if anchor:
      with open(target) as f:
        headings = re.findall(r'^#+ (.*)$', f.read(), re.M)
      assert anchor in [_slug(h) for h in headings], (path, anchor)
