#!/usr/bin/env python3
"""Heap per viewer by owner, from two heaptrack peak-cost stack files (heaptrack_print -F with
--flamegraph-cost-type peak) taken at two viewer counts: the difference divided by the difference
of viewers, so that the node's fixed costs cancel out.

    heap_owners.py STACKS_LOW LOW STACKS_HIGH HIGH
"""

import collections
import re
import sys

# The owner of an allocation is the innermost frame that is not the allocator or a standard
# container growing (in a release build most frames are inlined and named by function and file
# only), shown with its caller.
SKIP_NAMES = {
    "malloc", "calloc", "realloc", "alloc", "allocate", "allocate_in", "try_allocate_in",
    "with_capacity", "with_capacity_in", "grow_one", "grow_amortized", "grow_exact", "finish_grow",
    "reserve", "reserve_for_push", "do_reserve_and_handle", "try_reserve", "push", "push_back",
    "push_front", "extend", "extend_from_slice", "extend_trusted", "extend_desugared",
    "spec_extend", "to_vec", "clone", "new", "from", "from_iter", "collect", "insert", "resize",
    "default", "into", "to_owned", "box_new", "new_uninit", "allocate_for_layout", "exchange_malloc",
    "operator new", "handle_reserve", "reserve_exact", "from_elem", "call_once", "fmt", "write_str",
}
SKIP_FILES = {
    "raw_vec.rs", "alloc.rs", "boxed.rs", "sync.rs", "rc.rs", "spec_from_iter.rs",
    "spec_from_iter_nested.rs", "spec_extend.rs", "spec_from_elem.rs", "slice.rs", "string.rs",
    "malloc.c", "heaptrack_preload.cpp", "libheaptrack.cpp", "vec_deque.rs",
}
FRAME = re.compile(r"^(?P<name>.*?)(?: \((?P<file>[^()]*)\))?$")
HASH = re.compile(r"::h[0-9a-f]{16}")


def base(frame):
    """(function name without path, generics or hash; file) of a heaptrack frame."""
    m = FRAME.match(frame)
    name = HASH.sub("", m.group("name") or "")
    name = re.sub(r"<.*", "", name).split("::")[-1].strip() or name
    return name, m.group("file") or ""


def owners(path):
    """Peak heap bytes by owning function (with its caller)."""
    by_owner = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, cost = line.rstrip("\n").rpartition(" ")
            if not cost.isdigit():
                continue
            # Inlined frames may come in either order: the owner is the innermost frame left
            # after skipping, its context the next one left.
            kept = [base(fr) for fr in stack.split(";") if fr.strip()]
            kept = [(n, f) for n, f in kept if not (n in SKIP_NAMES or f in SKIP_FILES or n.startswith("{"))]
            owner = " <- ".join(f"{n} ({f})" for n, f in reversed(kept[-2:])) or "?"
            by_owner[owner[:120]] += int(cost)
    return by_owner


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    low, n_low, high, n_high = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if n_high <= n_low:
        sys.exit("HIGH must exceed LOW")
    a, b = owners(low), owners(high)
    viewers = n_high - n_low
    total = (sum(b.values()) - sum(a.values())) / viewers
    print(f"heap at peak: {sum(a.values()) / 1024:.0f} KiB with {n_low} viewers, "
          f"{sum(b.values()) / 1024:.0f} KiB with {n_high}: {total / 1024:.1f} KiB per viewer")
    rows = sorted(((b[k] - a[k]) / viewers, k) for k in set(a) | set(b))
    rows.reverse()
    print("| KiB per viewer | share | owner |")
    print("|---|---|---|")
    for per, k in rows:
        if abs(per) < 512:
            continue
        print(f"| {per / 1024:.1f} | {per / total:.0%} | `{k}` |")


if __name__ == "__main__":
    main()
