"""Packaging for eqt-monitor: continuous EQTransformer monitoring."""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="eqt-monitor",
    version="0.1.0",
    description="Continuous seismic monitoring with EQTransformer and its variants",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["eqt_monitor", "eqt_monitor.*"]) + ["eqt_monitor.zoo"],
    # models/ (one spec per variant + the weight registry) installs as eqt_monitor.zoo
    package_dir={"eqt_monitor.zoo": "models"},
    package_data={"eqt_monitor.zoo": ["*.yaml"], "eqt_monitor": ["deploy/*"]},
    install_requires=[
        "numpy",
        "scipy",
        "h5py",
        "pyyaml",
        "tensorflow>=2.16",
        "keras>=3.0",
        "obspy>=1.4",
        "apscheduler>=3.10,<4",
        "prometheus-client",
        "pyocto>=0.2.2",  # 0.2 has the 1D velocity model; on Python 3.11 it needs numpy<2
        "tqdm",
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "portable-fdsnws-dataselect",
            "mseedindex",
        ],
    },
    entry_points={"console_scripts": ["eqt-monitor = eqt_monitor.cli:main"]},
)
