"""Generate Python code and `.pyi` stubs from `proto/` into `services/v1/` (`labelloop.v1`).

`make proto` runs `python -m labelloop.core.protogen`; `--check` (run by `make lint` and a test)
exits 1 and lists the files that differ when the committed code is stale. The generator is the
pinned grpcio-tools (constraints.txt) with its bundled protoc, plus mypy-protobuf for gRPC stubs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PACKAGE_PROTO_DIR = PROTO_DIR / "labelloop" / "v1"
OUT_DIR = ROOT / "services" / "v1"
HEADER = '"""Generated from proto/labelloop/v1 by `make proto`. Do not edit."""\n'


def generate(dest: Path) -> list[Path]:
    """Run protoc into `dest`; return the generated files (relative to dest/labelloop/v1)."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PACKAGE_PROTO_DIR.glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    plugin = Path(sysconfig.get_path("scripts")) / "protoc-gen-mypy_grpc"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={dest}",
        f"--pyi_out={dest}",
        f"--grpc_python_out={dest}",
        f"--plugin=protoc-gen-mypy_grpc={plugin}",
        f"--mypy_grpc_out={dest}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")
    out = dest / "labelloop" / "v1"
    (out / "__init__.py").write_text(HEADER)
    (out / "py.typed").write_text("")
    return sorted(p.relative_to(out) for p in out.iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if services/v1 is stale")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        fresh = Path(tmp) / "labelloop" / "v1"
        current = {p.name for p in OUT_DIR.glob("*") if p.is_file()} if OUT_DIR.exists() else set()
        expected = {str(f) for f in files}
        stale = sorted(
            str(f)
            for f in files
            if not (OUT_DIR / f).exists() or not filecmp.cmp(fresh / f, OUT_DIR / f, False)
        )
        extra = sorted(current - expected)
        if ns.check:
            if stale or extra:
                print("generated code is stale; run `make proto`:", *(stale + extra), file=sys.stderr)
                return 1
            print(f"services/v1 is up to date ({len(files)} files)")
            return 0
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for name in extra:
            (OUT_DIR / name).unlink()
        for f in files:
            shutil.copyfile(fresh / f, OUT_DIR / f)
        print(f"generated {len(files)} files in services/v1 ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
