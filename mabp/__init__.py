__version__ = "0.1.0"

# Before any module imports torch: OpenMP reads its wait policy once, when torch loads it (nbs/00b_omp.ipynb).
from .omp import set_wait_policy as _set_wait_policy
OMP_DECISION = _set_wait_policy()
