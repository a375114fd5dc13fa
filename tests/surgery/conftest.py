"""pytest configuration for the tools tests."""


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'zoo: keras.applications models (set MORPH_NET_ZOO to pick '
      'them; default ResNet50,MobileNetV2).')
