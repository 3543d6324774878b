"""``starloom library``: list, show and remove the masters of a calibration library."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

COLUMNS = (("ID", "id", 12), ("TYPE", "type", 5), ("EXPTIME", "exptime", 8),
           ("FILTER", "filter", 8), ("TEMP", "ccd_temp", 6), ("GAIN", "gain", 6),
           ("OFFSET", "offset", 6), ("BIN", "bin", 4), ("SIZE", "size", 10),
           ("N", "n_frames", 4), ("DATE-OBS", "date", 10), ("INSTRUMENT", "instrument", 0))


def _cell(m, name: str) -> str:
    if name == "bin":
        return f"{m.xbinning or '-'}x{m.ybinning or '-'}"
    if name == "size":
        return f"{m.naxis1}x{m.naxis2}"
    if name == "date":
        return (m.date_obs or "-")[:10]
    v = getattr(m, name)
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _list(lib, as_json: bool) -> int:
    masters = lib.masters()
    if as_json:
        print(json.dumps([asdict(m) for m in masters], indent=1))
        return 0
    if not masters:
        print(f"library {lib.root}: empty")
        return 0
    print("  ".join(f"{title:<{width}}" for title, _, width in COLUMNS).rstrip())
    for m in sorted(masters, key=lambda m: (m.type, m.exptime or 0, m.filter or "", m.id)):
        print("  ".join(f"{_cell(m, name):<{width}}" for _, name, width in COLUMNS).rstrip())
    print(f"{len(masters)} master(s) in {lib.root}")
    return 0


def cmd_library(args) -> int:
    """Run one ``starloom library`` action (exit 0; errors reach main() as StarloomError)."""
    from starloom.astro.library import Library  # imported when used: command-line startup

    lib = Library(args.library)
    if args.action == "list":
        return _list(lib, args.json)
    if not args.id:
        print(f"starloom: library {args.action} needs a master ID (see 'starloom library list')",
              file=sys.stderr)
        return 2
    if args.action == "show":
        m = lib.get(args.id)
        for key, value in asdict(m).items():
            print(f"{key:<16} {value}")
        print(f"{'path':<16} {lib.path(m)}")
        return 0
    m = lib.remove(args.id)
    print(f"removed {m.id} ({m.describe()}) and {lib.path(m)}")
    return 0


def add_library_parser(sub) -> None:
    """The ``library`` sub-command and its options."""
    p = sub.add_parser(
        "library", help="list, show or remove the masters of the calibration library",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="list: a table of the masters; show ID: one master's metadata; remove ID: "
                    "delete its file and catalogue row. IDs may be shortened to 4+ characters. "
                    "The library is --library, else $STARLOOM_LIBRARY, else 'library' in the "
                    "user data folder.")
    p.add_argument("action", choices=["list", "show", "remove"], nargs="?", default="list")
    p.add_argument("id", nargs="?", help="master ID (show, remove)")
    p.add_argument("--library", metavar="PATH", help="library folder")
    p.add_argument("--json", action="store_true", help="list: print the catalogue as JSON")
    p.set_defaults(fn=cmd_library)
