"""``starloom cache``: info, clear, verify and garbage collection of the node-output cache."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by the cache commands only: other commands start without it
    from starloom.graph_runtime.cache import Cache


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def cmd_cache(args) -> int:
    """Run one ``starloom cache`` action; exit 0, or 1 when ``verify`` finds damage."""
    from starloom.graph_runtime.cache import Cache
    cache = Cache(args.cache)
    try:
        if args.action == "clear":
            print(f"removed {cache.clear()} entries from {cache.root}")
        elif args.action == "verify":
            return _verify(cache, args.repair)
        elif args.action == "gc":
            return _gc(cache, args)
        else:
            info = cache.info()
            print(f"cache {info['path']}: {info['entries']} entries, {_mb(info['bytes'])}; "
                  f"{info['orphans']} orphan(s) of interrupted writes, "
                  f"{_mb(info['orphan_bytes'])}")
    finally:
        cache.close()
    return 0


def _verify(cache: Cache, repair: bool) -> int:
    damaged = cache.verify(repair=repair)
    for name, problem in damaged:
        print(f"damaged {name}: {problem}")
    if not damaged:
        print(f"cache {cache.root}: every entry is intact")
        return 0
    if repair:
        print(f"removed {len(damaged)} damaged item(s); the next run recomputes them")
        return 0
    print(f"{len(damaged)} damaged item(s); 'starloom cache verify --repair' removes them "
          "(runs also recompute a damaged entry by themselves)")
    return 1


def _gc(cache: Cache, args) -> int:
    from starloom.graph_runtime.cache_maintenance import parse_age, parse_size
    try:
        max_bytes = parse_size(args.max_size) if args.max_size else None
        older_than = parse_age(args.older_than) if args.older_than else None
    except ValueError as e:
        print(f"starloom: cache gc: {e}", file=sys.stderr)
        return 2
    res = cache.gc(max_bytes=max_bytes, older_than=older_than)
    print(f"removed {res['removed']} entries ({_mb(res['bytes'])}) and {res['orphans']} "
          f"orphan(s); {_mb(res['bytes_left'])} left")
    if res["kept_in_use"]:
        print(f"kept {res['kept_in_use']} entries a running process is using")
    return 0


def add_cache_parser(sub) -> None:
    """The ``cache`` sub-command and its options."""
    p = sub.add_parser(
        "cache", help="show, check, collect or clear the cache",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="info: entries, size and orphans; clear: remove everything; verify: check "
                    "every entry's checksums (--repair removes damaged ones); gc: remove "
                    "least recently used entries (--max-size 20GB, --older-than 30d), never "
                    "one a running process uses")
    p.add_argument("action", choices=["info", "clear", "verify", "gc"], nargs="?",
                   default="info")
    p.add_argument("--cache", help="cache folder (default: the user cache folder)")
    p.add_argument("--repair", action="store_true", help="verify: remove damaged entries")
    p.add_argument("--max-size", metavar="SIZE", help="gc: keep at most this much, e.g. 20GB")
    p.add_argument("--older-than", metavar="AGE",
                   help="gc: remove entries not used for this long, e.g. 30d or 12h")
    p.set_defaults(fn=cmd_cache)
