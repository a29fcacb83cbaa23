"""Does streaming FID statistics really use memory independent of the number of images? (A measurement.)

Feeds N random feature vectors of dimension D, in chunks of B, into :class:`t2i_lib.metrics.FeatureStats`
for increasing N, and prints one row per N: the time taken, the peak memory that ``tracemalloc`` saw
(NumPy reports its arrays to it, so this is the accumulator plus one chunk and its temporaries), and the
process's resident set size (RSS) afterwards. For contrast, the last column is what stacking all N
feature vectors in float64 first would need (N x D x 8 bytes) before a covariance could even be taken.

    python benchmarks/fid_stream.py                          # D = 2048 (Inception), N up to 32k
    python benchmarks/fid_stream.py --dim 256 --ns 1000 10000 100000

Expected: the tracemalloc peak stays flat (about 3 D x D float64 matrices plus a chunk) while N grows;
time grows linearly in N (each chunk costs a B x D x D product).

    python benchmarks/fid_stream.py --trace                  # the trace term: sqrtm vs eigenvalues

``--trace`` times the one expensive step of the distance itself, Tr((S1 S2)^{1/2}), for covariances of
N samples: pytorch-fid's ``scipy.linalg.sqrtm`` of the product (with its 1e-6 diagonal offset retried
when the root fails, as happens below N = D + 1) against :func:`t2i_lib.metrics.trace_sqrt_product`
(two symmetric eigen-decompositions), and prints how far apart the two values are.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from t2i_lib.metrics.fid import FeatureStats, trace_sqrt_product


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:9.1f}"


def rss_mib() -> float:
    """Current RSS from /proc where available, else the peak from getrusage (Linux reports KiB)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, dim: int, chunk: int, seed: int = 0) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    tracemalloc.start()
    t0 = time.perf_counter()
    stats = FeatureStats(dim)
    done = 0
    while done < n:
        b = min(chunk, n - done)
        feats = (rng.standard_normal((b, dim), dtype=np.float32) @ mix.astype(np.float32))  # like a batch of features
        stats.update(feats)
        done += b
    _ = stats.cov  # the final covariance, as compute_fid would take it
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak


def sqrtm_trace_pytorch_fid_way(s1: np.ndarray, s2: np.ndarray, eps: float = 1e-6) -> tuple[float, bool]:
    """Tr(sqrtm(S1 S2)) as pytorch-fid computes it; also whether the eps offset was needed."""
    import warnings

    import scipy.linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(s1 @ s2)
        ok = np.isfinite(root).all() and np.allclose(root @ root, s1 @ s2, rtol=1e-5, atol=1e-8)
        if not ok:
            offset = np.eye(len(s1)) * eps
            root = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    return float(np.trace(root).real), not ok


def trace_table(dim: int, ns: list[int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    print(f"Tr((S1 S2)^(1/2)), D = {dim}: scipy sqrtm (pytorch-fid) vs trace_sqrt_product (eigh)")
    print(f"{'N':>7} {'rank':>5} {'sqrtm s':>8} {'offset':>7} {'eigh s':>7} {'speed-up':>9} {'rel. diff':>10}")
    for n in ns:
        x1, x2 = rng.standard_normal((n, dim)), rng.standard_normal((n, dim)) + 0.1
        s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
        t0 = time.perf_counter()
        ref, offset = sqrtm_trace_pytorch_fid_way(s1, s2)
        t1 = time.perf_counter()
        ours = trace_sqrt_product(s1, s2)
        t2 = time.perf_counter()
        print(f"{n:>7} {min(n - 1, dim):>5} {t1 - t0:>8.2f} {'yes' if offset else 'no':>7} {t2 - t1:>7.2f} "
              f"{(t1 - t0) / (t2 - t1):>8.1f}x {abs(ours - ref) / abs(ref):>10.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=2048, help="feature dimension D (2048 for Inception pool features)")
    ap.add_argument("--ns", type=int, nargs="+", default=[1000, 4000, 16000, 32000], help="numbers of images N")
    ap.add_argument("--chunk", type=int, default=500, help="features per update (a batch)")
    ap.add_argument("--trace", action="store_true", help="time the trace term instead (N defaults to 64 256 4096)")
    args = ap.parse_args()
    if args.trace:
        trace_table(args.dim, args.ns if "--ns" in sys.argv else [64, 256, 4096])
        return

    print(f"FeatureStats streaming: D = {args.dim}, chunk = {args.chunk}")
    print(f"{'N':>8} {'time (s)':>9} {'peak traced MiB':>16} {'RSS MiB':>9} {'stack-all MiB':>14}")
    for n in args.ns:
        elapsed, peak = run(n, args.dim, args.chunk)
        print(f"{n:>8} {elapsed:>9.2f} {_mib(peak):>16} {rss_mib():>9.1f} {_mib(n * args.dim * 8):>14}")


if __name__ == "__main__":
    main()
