"""nkern: exact infinite-width NNGP and NTK kernels of deep MLPs and CNNs, from Python.

    import nkern
    K = nkern.kernel("[conv(3) relu]*3 gap dense", x)          # NTK Gram of x (N, H, W, C)
    nngp, ntk = nkern.kernel(spec, x_test, x_train, get="both")  # test rows, train columns
    mean = nkern.predict(k_train, y_train, k_test)              # NNGP posterior mean

A thin layer over libnkern.so (cffi, ABI mode): results are bit for bit those of the `nkern`
command-line tool.  The library is found through $NKERN_LIB, else the package's own copy, the
source tree's build/, or the installed prefix (nkern.LIBRARY_PATH says which).  Errors raise
nkern.Error subclasses carrying the library's message: InputError (a ValueError), FileError
(an OSError), MemoryLimitError (a MemoryError), RunError (a RuntimeError).  Ctrl-C stops a
long computation (KeyboardInterrupt) with everything freed.  scikit-learn estimators are in
nkern.sklearn; data sets in nkern.data; mean field theory in nkern.theory.
"""
from ._lib import Error, InputError, FileError, MemoryLimitError, RunError, NonFiniteError, LIBRARY_PATH
from .kernels import Arch, kernel, num_threads, simd_isa
from .infer import predict, one_hot
from .theory import spectrum, Spectrum
from . import data, theory

__version__ = "0.1.0"

__all__ = ["Arch", "kernel", "predict", "one_hot", "spectrum", "Spectrum", "data", "theory",
           "Error", "InputError", "FileError", "MemoryLimitError", "RunError", "NonFiniteError", "num_threads", "simd_isa",
           "LIBRARY_PATH"]
