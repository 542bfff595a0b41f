# cffi has no pyproject-only build hook yet (cffi issue 55): this is the glue.
from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"])
