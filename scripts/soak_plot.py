#!/usr/bin/env python3
"""Draws samples.csv of scripts/soak.sh (seconds, rss_kib, fds, threads) as an SVG and prints
the figures: RSS and file descriptors after the first 5 minutes (warm-up), at the end, and
their largest values. Standard library only."""
import csv
import sys

def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    rows = [(int(r["seconds"]), int(r["rss_kib"]), int(r["fds"]), int(r["threads"])) for r in csv.DictReader(open(src))]
    if not rows:
        sys.exit("no samples")
    warm = next((r for r in rows if r[0] >= 300), rows[0])
    last = rows[-1]
    after = [r for r in rows if r[0] >= warm[0]]
    print("samples: %d over %d s" % (len(rows), last[0]))
    print("RSS MiB: at %d s %.1f, at end %.1f, max after warm-up %.1f, min after warm-up %.1f"
          % (warm[0], warm[1] / 1024, last[1] / 1024, max(r[1] for r in after) / 1024, min(r[1] for r in after) / 1024))
    print("fds: at %d s %d, at end %d, max after warm-up %d; threads at end %d"
          % (warm[0], warm[2], last[2], max(r[2] for r in after), last[3]))
    w, h, pad = 720, 300, 50
    t_max = max(last[0], 1)
    def series(idx, vmax, color, label, y_off):
        pts = " ".join("%.1f,%.1f" % (pad + (w - 2 * pad) * r[0] / t_max, h - pad - (h - 2 * pad) * r[idx] / vmax) for r in rows)
        return ('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (color, pts)
                + '<text x="%d" y="%d" fill="%s" font-size="12">%s (axis 0 to %s)</text>' % (pad + 10, y_off, color, label, vmax))
    rss_max = max(r[1] for r in rows) * 1.1 / 1024
    fd_max = max(r[2] for r in rows) * 1.1
    rows_mib = [(r[0], r[1] / 1024, r[2], r[3]) for r in rows]
    rows[:] = rows_mib
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (pad, h - pad, w - pad, h - pad),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (pad, pad, pad, h - pad),
           '<text x="%d" y="%d" font-size="12">time (s, 0 to %d)</text>' % (w // 2 - 40, h - 15, t_max),
           series(1, round(rss_max, 1), "#c0392b", "RSS, MiB", 20),
           series(2, round(fd_max), "#2471a3", "open file descriptors", 36),
           '</svg>']
    open(out, "w").write("\n".join(svg))

if __name__ == "__main__":
    main()
