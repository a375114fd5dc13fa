"""The latency modules' old paths: deprecated aliases of morph_net.latency."""

import importlib
import sys
from unittest import mock
import warnings

import pytest

from morph_net.latency import calibration
from morph_net.latency import fit
from morph_net.latency import timing
from morph_net.latency import variants

# Old module path -> (new module, a public name of it).
OLD_PATHS = {
    'morph_net.keras.latency_timing': (timing, 'time_interleaved'),
    'morph_net.keras.latency_variants': (variants, 'layer_variants'),
    'morph_net.keras.latency_calibration': (calibration, 'calibrate'),
    'morph_net.network_regularizers.latency_fit': (fit, 'fit_profile'),
}


def _forget(name):
  """Drops a module imported before, so the next import runs it again."""
  sys.modules.pop(name, None)
  package, _, attribute = name.rpartition('.')
  package = importlib.import_module(package)
  if hasattr(package, attribute):
    delattr(package, attribute)


@pytest.mark.parametrize('old', sorted(OLD_PATHS))
def test_old_path_warns_and_is_the_new_module(old):
  new, name = OLD_PATHS[old]
  _forget(old)
  with pytest.warns(DeprecationWarning) as record:
    module = importlib.import_module(old)
  assert module is new
  assert sys.modules[old] is new
  assert getattr(sys.modules[old.rpartition('.')[0]],
                 old.rpartition('.')[2]) is new
  assert getattr(module, name) is getattr(new, name)
  messages = [str(w.message) for w in record
              if issubclass(w.category, DeprecationWarning)]
  assert messages == [
      '%s moved to %s; the old path is deprecated and will be removed: '
      'import %s instead.' % (old, new.__name__, new.__name__)]


def test_warning_names_the_importing_line():
  _forget('morph_net.keras.latency_timing')
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter('always')
    import morph_net.keras.latency_timing  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
  assert [w.filename for w in record
          if issubclass(w.category, DeprecationWarning)] == [__file__]


def test_from_import_and_mock_patch_of_the_old_path():
  from morph_net.keras.latency_calibration import CalibrationSettings  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  assert CalibrationSettings is calibration.CalibrationSettings
  with mock.patch('morph_net.keras.latency_timing.describe_device',
                  return_value='patched'):
    assert timing.describe_device() == 'patched'
  assert timing.describe_device() != 'patched'


def test_the_regularizers_and_keras_do_not_import_the_latency_package():
  # morph_net.latency imports network_regularizers, surgery and structure;
  # none of the packages below it imports morph_net.latency at module level.
  import morph_net  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  import os  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  root = os.path.dirname(morph_net.__file__)
  importers = []
  for package in ('network_regularizers', 'keras', 'surgery', 'structure',
                  'framework', 'op_handlers', 'op_regularizers', 'compat'):
    for file_name in sorted(os.listdir(os.path.join(root, package))):
      if file_name.endswith('.py'):
        with open(os.path.join(root, package, file_name)) as f:
          if 'morph_net.latency' in ''.join(
              line for line in f if line.startswith(('import', 'from'))):
            importers.append('%s/%s' % (package, file_name))
  assert importers == []
