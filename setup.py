"""Packaging for sysadmd, the SysAdm event service re-implemented on Twisted."""

from setuptools import find_packages, setup

setup(
    name="sysadmd",
    version="0.1.0",
    description="SysAdm-compatible system administration event service (Twisted/Autobahn)",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="BSD-2-Clause",
    python_requires=">=3.9",
    # twisted/plugins has no __init__.py on purpose (it would shadow Twisted's own
    # plugins), so find_packages() cannot see it: list it explicitly.
    packages=find_packages(include=["sysadmd", "sysadmd.*"]) + ["twisted.plugins"],
    package_data={
        "twisted.plugins": ["sysadmd_plugins.py"],
        "sysadmd.web": ["dashboard/*.html", "dashboard/*.js", "dashboard/*.css"],
    },
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=23.10",
        "autobahn[twisted]>=23.1",
        "zope.interface>=5",
        "treq>=22.1",
        # Argon2id password hashes for the users file (the reference KDF).
        "argon2-cffi>=21.3",
        # Public keys for rpc/auth_ssl and the generated TLS certificate.
        "cryptography>=41",
        # System accounts (the default `pam` backend) without a C extension of our own.
        "python-pam>=2.0",
        # GET /metrics: the Prometheus text format, exposition and content type done right.
        "prometheus_client>=0.17",
        # The Noise protocol (Noise_NK_25519_ChaChaPoly_BLAKE2s) of relayed sessions, on
        # cryptography's primitives: magic-wormhole's choice, checked against the
        # published test vectors (tests/unit/test_tunnel.py).
        "noiseprotocol>=0.3.1",
    ],
    extras_require={
        # websockets: an independent, synchronous WebSocket client for the integration tests.
        "test": [
            "pytest>=7", "pytest-twisted>=1.14", "hypothesis>=6", "websockets>=12", "nats-py>=2.6",
        ],
        # The fleet (twistd sysadm-fleet, sysadm fleet): NATS's own asyncio client, run on
        # Twisted's asyncio reactor; the daemon itself never imports it.
        "fleet": ["nats-py>=2.6"],
    },
    entry_points={
        "console_scripts": [
            "sysadmd-admin = sysadmd.admin.cli:main",
            "sysadm = sysadmd.client.cli:main",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Topic :: System :: Systems Administration",
        "Programming Language :: Python :: 3",
    ],
)
