"""Builds the package's one compiled module, when Cython is there; everything else is in setup.cfg.

That module is ``fmspy_gateway/rtmp/amf_plain.py``, typed by the ``.pxd``
beside it (it says why it is compiled).  The extension is optional: without
Cython or a C compiler the install goes on and the module runs as the Python
it is (``amf_plain.COMPILED`` says which).
"""
from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:       # a build without isolation and without Cython: the Python source runs
    extensions = []
else:
    extensions = cythonize([Extension("fmspy_gateway.rtmp.amf_plain", ["fmspy_gateway/rtmp/amf_plain.py"])],
                           language_level=3, quiet=True, build_dir="build")     # its C file: not in the package
    for extension in extensions:
        extension.optional = True       # set here: cythonize builds new Extensions and drops the flag

setup(ext_modules=extensions)
