"""``python -m numrnn``: command-line tools.

``python -m numrnn warmup [--cells lstm,gru] [--dtypes float32,float64] [--no-progress]``
    Compile (or load from Numba's cache) the CPU kernels of those cells and dtypes
    (:func:`numrnn.warmup.warmup`), print seconds per cell/dtype and where the cache is.
``python -m numrnn cache-dir``
    Print where Numba keeps numrnn's compiled CPU kernels.
"""

from __future__ import annotations

import argparse
import sys


def _names(argument, choices):
    def parse(text):
        from numrnn.warmup import parse_names

        try:
            return parse_names(argument, text, choices)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser():
    from numrnn.warmup import CELLS, DTYPES

    parser = argparse.ArgumentParser(prog="python -m numrnn", description="numrnn command-line tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    warm = commands.add_parser(
        "warmup",
        help="compile numrnn's CPU kernels now (first use only; later runs load them from the cache)",
        description="Compile (or load from Numba's on-disk cache) every CPU kernel a typical training and "
        "streaming run uses for the given cells and dtypes.",
    )
    warm.add_argument("--cells", type=_names("cells", CELLS), default=CELLS,
                      help=f"comma-separated cell families (default: {','.join(CELLS)})")
    warm.add_argument("--dtypes", type=_names("dtypes", DTYPES), default=DTYPES,
                      help=f"comma-separated dtypes (default: {','.join(DTYPES)})")
    warm.add_argument("--no-progress", action="store_true", help="no progress bar (log a line per compilation instead)")
    # the background compile of a first use (numrnn.backends.cpu.first_use): one cell, one dtype
    warm.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    commands.add_parser("cache-dir", help="print where Numba keeps numrnn's compiled CPU kernels")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "cache-dir":
        from numrnn.warmup import cache_dir

        where = cache_dir()
        print(where if where is not None else "caching is off (NUMRNN_NO_CACHE=1)")
        return 0
    if args.background:
        if len(args.cells) != 1 or len(args.dtypes) != 1:
            build_parser().error("--background takes one cell family (--cells) and one dtype (--dtypes)")
        from numrnn.warmup import background_compile

        background_compile(args.cells[0], args.dtypes[0])
        return 0
    if args.no_progress:
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from numrnn.warmup import warmup

    print(warmup(cells=args.cells, dtypes=args.dtypes, progress=not args.no_progress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
