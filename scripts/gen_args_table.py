"""Write docs/megatron-lm-to-bridge.md from the installed megatron-core sources.

    .venv/bin/python scripts/gen_args_table.py [--check] [--output PATH]

``--check`` writes nothing and exits 1 when the file is not current.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.config.argtable import render_table  # noqa: E402

DEFAULT_OUTPUT = ROOT / "docs" / "megatron-lm-to-bridge.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    args = parser.parse_args(argv)
    text = render_table()
    current = args.output.read_text() if args.output.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale; run: .venv/bin/python scripts/gen_args_table.py", file=sys.stderr)
            return 1
        print(f"{args.output} is current")
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
