"""MorphNet for TensorFlow 2 and Keras 3."""

import setuptools

setuptools.setup(
    name='morph-net',
    version='0.2.0',
    description='MorphNet: resource-constrained structure learning of deep '
    'networks, for TensorFlow 2 and Keras 3.',
    packages=setuptools.find_packages(include=['morph_net', 'morph_net.*']),
    python_requires='>=3.10',
    install_requires=[
        'tensorflow>=2.21,<2.22',
        'absl-py',
        'numpy',
        'scipy',  # Latency profile fit (scipy.optimize).
        'gin-config',
        'tensorboard',
    ],
    extras_require={
        'examples': ['tensorflow-datasets', 'matplotlib'],
        'legacy_keras': ['tf-keras>=2.21,<2.22'],
        'slim': ['tf-slim>=1.1', 'tf-keras>=2.21,<2.22'],
        # A virtual environment WITHOUT TensorFlow for the layer-level engine
        # on KERAS_BACKEND=jax (docs/guides/backends.md). Not installed with
        # this package (its install_requires pull TensorFlow): `scripts/
        # install.sh jax` installs exactly these into its own venv.
        'jax': ['keras>=3.10', 'jax[cpu]', 'numpy', 'scipy', 'gin-config',
                'absl-py', 'pytest', 'hypothesis'],
        # The same for KERAS_BACKEND=torch. An extra cannot name an index:
        # from PyPI, `torch` on Linux is the CUDA build (gigabytes of
        # nvidia-* wheels). `scripts/install.sh torch` first installs the
        # CPU-only wheel from https://download.pytorch.org/whl/cpu
        # ($TORCH_FIND_LINKS), then these, which find torch satisfied.
        'torch': ['keras>=3.10', 'torch', 'numpy', 'scipy', 'gin-config',
                  'absl-py', 'pytest', 'hypothesis'],
        # mkdocs, mkdocstrings: tests/test_docs.py builds the documentation
        # site and its API reference (mkdocs.yml) with `mkdocs build --strict`.
        # hypothesis: tests/property/test_random_models.py generates random
        # models with it (morph_net.testing.random_models).
        'test': ['pytest', 'pytest-xdist', 'hypothesis',
                 'tf-keras>=2.21,<2.22', 'tf-slim>=1.1',
                 'tensorflow-datasets', 'matplotlib',
                 'mkdocs', 'mkdocstrings[python]'],
    },
)
