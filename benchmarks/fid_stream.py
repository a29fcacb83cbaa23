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

from t2i_lib.metrics import FeatureStats  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=2048, help="feature dimension D (2048 for Inception pool features)")
    ap.add_argument("--ns", type=int, nargs="+", default=[1000, 4000, 16000, 32000], help="numbers of images N")
    ap.add_argument("--chunk", type=int, default=500, help="features per update (a batch)")
    args = ap.parse_args()

    print(f"FeatureStats streaming: D = {args.dim}, chunk = {args.chunk}")
    print(f"{'N':>8} {'time (s)':>9} {'peak traced MiB':>16} {'RSS MiB':>9} {'stack-all MiB':>14}")
    for n in args.ns:
        elapsed, peak = run(n, args.dim, args.chunk)
        print(f"{n:>8} {elapsed:>9.2f} {_mib(peak):>16} {rss_mib():>9.1f} {_mib(n * args.dim * 8):>14}")


if __name__ == "__main__":
    main()
