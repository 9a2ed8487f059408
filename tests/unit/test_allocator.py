"""The worker's allocator setting: freed large blocks go back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from streams.allocator import ENVIRONMENT_VARIABLE, fix_mmap_threshold

# Frees one 16 MiB block first, which raises glibc's own threshold to 16 MiB, then
# allocates 200 blocks of 512 KiB with a small long-lived object after each (of
# 1 KiB: malloc's, not Python's small-object allocator's), and
# frees the blocks: without a fixed threshold they sit in the heap between the
# small objects and cannot be returned. Prints the resident memory (KiB) with the
# blocks held and after they are freed.
PROBE = textwrap.dedent(
    """
    import sys
    from streams.allocator import fix_mmap_threshold

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
    first = bytearray(16 * 1024 * 1024)
    del first
    blocks, keep = [], []
    for index in range(200):
        blocks.append(bytearray(512 * 1024))
        keep.append(bytes(1024) + index.to_bytes(4, "little"))
    held = rss_kib()
    del blocks
    print(fixed, held, rss_kib())
    """
)


def run_probe(mode: str) -> tuple[bool, int, int]:
    env = {key: value for key, value in os.environ.items() if key != ENVIRONMENT_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    fixed, held, freed = done.stdout.split()
    return fixed == "True", int(held), int(freed)


def test_freed_blocks_go_back_to_the_system_once_the_threshold_is_fixed() -> None:
    fixed, held, freed = run_probe("fix")
    assert fixed
    blocks_kib = 200 * 512
    assert held - freed > 0.9 * blocks_kib, (held, freed)
    # The probe tells the two apart: without the setting the freed blocks stay.
    _, held, freed = run_probe("leave")
    assert held - freed < 0.5 * blocks_kib, (held, freed)


def test_glibcs_own_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "65536")
    assert fix_mmap_threshold() is False


def test_the_worker_collects_cycles_less_often_and_still_collects_them() -> None:
    probe = textwrap.dedent(
        """
        import gc
        from streams.allocator import relax_collector

        relax_collector()
        young = gc.get_threshold()[0]
        before = gc.get_count()[0]
        for _ in range(20_000):
            cycle = []
            cycle.append(cycle)
        del cycle
        print(young, before, gc.get_count()[0], gc.collect())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    young, before, after, collected = done.stdout.split()
    assert int(young) == 50_000
    # The 20,000 cycles stayed in the young generation: no collection ran ...
    assert int(after) - int(before) >= 19_000
    # ... and a collection still finds every one of them.
    assert int(collected) >= 20_000


# Allocates 40,000 blocks of 1 KiB (malloc's), keeps one in 32 (so every freed
# run has a live block above it and the heap cannot shrink from its top), frees
# the others, then trims the heap or not. Prints the resident memory (KiB) with
# the blocks held, after they are freed, and after the trim, and what
# trim_heap returned.
TRIM_PROBE = textwrap.dedent(
    """
    import sys
    from streams.allocator import trim_heap

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    blocks = [bytes(1024) + index.to_bytes(4, "little") for index in range(40_000)]
    held = rss_kib()
    kept = blocks[31::32]
    del blocks
    freed = rss_kib()
    returned = trim_heap() if sys.argv[1] == "trim" else False
    print(returned, held, freed, rss_kib(), len(kept))
    """
)


def run_trim_probe(mode: str) -> tuple[bool, int, int, int]:
    done = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    returned, held, freed, trimmed, _ = done.stdout.split()
    return returned == "True", int(held), int(freed), int(trimmed)


def test_trimming_returns_free_pages_inside_the_heap() -> None:
    blocks_kib = 40_000 * 31 // 32  # the freed blocks, about 38 MiB
    returned, held, freed, trimmed = run_trim_probe("trim")
    # Freeing alone gives back little: the kept blocks pin the heap ...
    assert held - freed < 0.2 * blocks_kib, (held, freed)
    # ... trimming returns most of it.
    assert returned
    assert freed - trimmed > 0.6 * blocks_kib, (freed, trimmed)
    # Without the trim the memory stays (the probe tells the two apart).
    _, held, freed, untrimmed = run_trim_probe("leave")
    assert held - untrimmed < 0.2 * blocks_kib, (held, untrimmed)
