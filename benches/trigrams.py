#!/usr/bin/env python3
"""Rebuild scanner/src/engine/trigrams.txt: the 4096 three-byte runs most
frequent in source code, case-folded as the keyword prefilter folds them
(`byte | 0x20`), each with a weight of 4 * log2(count + 1).

The prefilter enters each keyword by its rarest run; this table is how it
knows which runs are common. Count over a general corpus, never over the
benchmark inputs: by default the Python standard library and the crates.io
sources cargo has unpacked on this machine.

usage: benches/trigrams.py [ROOT...] > scanner/src/engine/trigrams.txt
(needs numpy)
"""
import math
import os
import sys

import numpy as np

EXTS = ('.py', '.rs', '.c', '.h', '.md', '.txt', '.toml', '.json', '.yml',
        '.yaml', '.js', '.sh', '.go', '.java', '.rb', '.html', '.cfg',
        '.ini', '.xml')
FOLD = bytes((b | 0x20) for b in range(256))
CHUNK = 64 << 20


def main():
    roots = sys.argv[1:] or [
        f'/usr/lib/python3.{sys.version_info.minor}',
        os.path.expanduser('~/.cargo/registry/src'),
    ]
    counts = np.zeros(1 << 24, dtype=np.int64)
    pending = []
    size = 0

    def flush():
        nonlocal pending, size
        if pending:
            counts[:] += np.bincount(np.concatenate(pending), minlength=1 << 24)
        pending, size = [], 0

    for root in roots:
        for d, _, files in os.walk(root):
            for f in files:
                if not f.endswith(EXTS):
                    continue
                try:
                    with open(os.path.join(d, f), 'rb') as fh:
                        b = fh.read()
                except OSError:
                    continue
                if len(b) < 3 or b'\0' in b[:8000]:
                    continue
                a = np.frombuffer(b.translate(FOLD), dtype=np.uint8).astype(np.uint32)
                pending.append(a[:-2] | (a[1:-1] << 8) | (a[2:] << 16))
                size += len(a)
                if size >= CHUNK:
                    flush()
    flush()
    top = np.argsort(counts)[::-1][:4096]
    for t in sorted(int(x) for x in top):
        run = bytes([t & 255, (t >> 8) & 255, t >> 16])
        print(f'{run.hex()} {int(math.log2(counts[t] + 1) * 4)}')


if __name__ == '__main__':
    main()
