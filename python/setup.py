"""Build hook: copy the source tree's build/libnkern.so into the package, so that an installed
`nkern` finds its own library.  Without a built library the package is installed alone and
finds libnkern through $NKERN_LIB or an installed prefix (`make install`)."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
BUILT = os.path.join(HERE, "..", "build", "libnkern.so")


class build_py_with_library(build_py):
    def run(self):
        super().run()
        if os.path.exists(BUILT):
            dest = os.path.join(self.build_lib, "nkern", "libnkern.so")
            shutil.copyfile(os.path.realpath(BUILT), dest)


setup(cmdclass={"build_py": build_py_with_library})
