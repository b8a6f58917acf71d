"""Markdown table of two gungraun --output-format=json runs: instructions (callgrind Ir) per
bench, thin against fat LTO. Parses the summaries as benches/src/gate.rs does."""
import json
import sys


def counts(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        s = json.loads(line)
        name = s["module_path"] + ("." + s["id"] if s.get("id") else "")
        cg = next(p for p in s["profiles"] if p["tool"] == "Callgrind")
        out[name] = cg["data"]["total"]["metrics"]["Ir"]["values"]["new"]
    return out


thin, fat = counts(sys.argv[1]), counts(sys.argv[2])
print("| bench | thin LTO, 16 CGUs | fat LTO, 1 CGU | fat / thin |")
print("|---|---:|---:|---:|")
ratios = []
for name in sorted(thin):
    t, f = thin[name], fat[name]
    ratios.append(f / t)
    short = name.removeprefix("instructions::")
    print(f"| {short} | {t:,} | {f:,} | {f / t:.3f} |")
geo = 1.0
for r in ratios:
    geo *= r
print(f"| geometric mean of the ratios | | | {geo ** (1 / len(ratios)):.3f} |")
