"""Run every notebook's tests (nbdev's `test_nb`) and end with one line `N passed, N failed`.

`nbdev_test` prints only "Success."; CI reads a count, so this wraps the same machinery:
same skip flags (settings.ini `tst_flags`), same working directory, notebooks in parallel.
Usage: python tools/test_notebooks.py [nbs] [--flags slow] [--workers 2] [--only PATTERN] [--docs]
"""
import argparse, os, sys, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('path', nargs='?', default='nbs')
    ap.add_argument('--flags', default='', help='space separated test flags to run (e.g. "slow")')
    ap.add_argument('--workers', type=int, default=min(os.cpu_count() or 1, 2))
    ap.add_argument('--only', default=None, help='substring a notebook name must contain')
    ap.add_argument('--docs', action='store_true', help='also check that the results notebooks carry current outputs '
                    '(tools/build_docs.py --check-stale) and that their pages show their tables and figures '
                    '(--check-results), counted as two tests')
    a = ap.parse_args()
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    from nbdev.test import test_nb
    from fastcore.parallel import parallel
    cfg = get_config()
    if a.workers > 1:   # notebooks run side by side: one BLAS/OpenMP thread each avoids oversubscribing the cores
        for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ.setdefault(k, '1')
    files = sorted(Path(f).absolute() for f in nbglob(a.path, as_path=True))
    if a.only: files = [f for f in files if a.only in f.name]
    if not files: print('no notebooks found'); print('0 passed, 0 failed'); return 1
    skip, force = cfg.tst_flags.split(), a.flags.split()
    t0 = time.time()
    os.chdir(cfg.nbs_path)
    res = parallel(test_nb, files, skip_flags=skip, force_flags=force, n_workers=a.workers if len(files) > 1 else 0,
                   basepath=cfg.config_path, do_print=False, pause=0.05)
    passed = [f for f, (ok, _) in zip(files, res) if ok]
    failed = [f for f, (ok, _) in zip(files, res) if not ok]
    for f, (ok, t) in sorted(zip(files, res), key=lambda o: o[0].name):
        print(f"{'PASS' if ok else 'FAIL'}  {f.name:<32} {t:6.1f}s")
    if a.docs:   # two more checks, each counted as one test: see tools/build_docs.py
        import subprocess
        for name, flag in (('docs: results outputs current', '--check-stale'), ('docs: results pages', '--check-results')):
            td = time.time()
            p = subprocess.run([sys.executable, str(Path(cfg.config_path) / 'tools' / 'build_docs.py'), flag],
                               cwd=cfg.config_path, capture_output=True, text=True)
            (passed if p.returncode == 0 else failed).append(Path(name))
            if p.returncode: print(p.stdout[-3000:] + p.stderr[-3000:])
            print(f"{'PASS' if p.returncode == 0 else 'FAIL'}  {name:<32} {time.time() - td:6.1f}s")
    print(f'total {time.time()-t0:.0f}s')
    print(f'{len(passed)} passed, {len(failed)} failed')
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
