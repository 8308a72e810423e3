"""The repeated-call leak check every pipeline test uses: resident memory after warm-up calls must not
grow over further calls."""

import gc
import os

import pytest

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="resident memory is read from /proc (Linux)")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def assert_no_host_memory_growth(call, warmup: int = 3, calls: int = 15, limit_mib: float = 32):
    for _ in range(warmup):  # allocator pools and caches settle first
        call()
    gc.collect()
    before = rss_mib()
    for _ in range(calls):
        call()
    gc.collect()
    # Catches a leak of about 2 MiB or more per call (an activation set, a weight copy); smaller leaks
    # hide in the allocator's own fluctuation, which is what the limit allows for.
    grown = rss_mib() - before
    assert grown < limit_mib, f"resident memory grew {grown:.1f} MiB over {calls} calls"
