"""python -m cad --info [--json]: what cad runs on (version, Python, CPU and SIMD, numpy,
scipy and the BLAS cad calls, threads, CUDA and why not, optional peers)."""
import argparse
import json
import sys


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m cad", description=__doc__.split(":")[0])
    p.add_argument("--info", action="store_true",
                   help="describe cad's build and the machine, libraries and devices it runs on")
    p.add_argument("--json", action="store_true", help="with --info: print it as JSON")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.info:
        p.print_help()
        return 0 if argv is None and len(sys.argv) == 1 else 2
    from ._info import collect, render
    info = collect()
    print(json.dumps(info, indent=1, default=str) if args.json else render(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
