"""Masked output's throughput (issue 26): MB/s of a child's stdout through inject with
``mask_output`` on, against the same run with it off, and the concealer alone.

``python benchmarks/mask.py [--mb 50] [--values 10]`` runs ``inject dev`` (its own OpenBao
dev server) with ``--values`` seeded secrets given to the child as env references (so inject
knows them, plus the dev token), and the child ``head -c`` a file of base64 text lines with
one of the values every MiB. The rate is the bytes read from inject's stdout over the time
from the first byte to the last (start-up is not counted). It prints one line per case; the
lines are what RESULTS.md's masked-output row quotes.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vault_inject.process.concealer import CONCEALED, Concealer

MIB = 1 << 20
READ = 1 << 16


def make_data(path: Path, size: int, values: list[str]) -> None:
    """``size`` bytes of base64 lines (76 columns), a value spliced in after every MiB."""
    with path.open("wb") as out:
        written, n = 0, 0
        while written < size:
            block = base64.encodebytes(os.urandom(MIB * 3 // 4))[: MIB - 64]
            block += values[n % len(values)].encode() + b"\n"
            block = block[: size - written]
            out.write(block)
            written += len(block)
            n += 1


def through_inject(data: Path, size: int, values: list[str], *, masked: bool, work: Path) -> float:
    """MB/s of ``head -c size data`` through ``inject dev``, first byte to last."""
    seeds = "\n".join(f'v{i} = "{value}"' for i, value in enumerate(values))
    (work / "secrets.toml").write_text(f'["secret/bench"]\n{seeds}\n')
    refs = [arg for i in range(len(values)) for arg in ("-e", f"V{i}=vault:secret/bench#v{i}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    env.update(HOME=str(work), INJECT_MASK_OUTPUT="true" if masked else "false", INJECT_LOG_LEVEL="warning")
    argv = [sys.executable, "-m", "vault_inject", "dev", "--secrets", "secrets.toml", *refs, "--"]
    proc = subprocess.Popen(
        [*argv, "head", "-c", str(size), str(data)], cwd=work, env=env, stdout=subprocess.PIPE
    )
    if proc.stdout is None:
        raise SystemExit("no pipe from inject")
    got, first, concealed = 0, 0.0, 0
    while chunk := proc.stdout.read1(READ):
        if not got:
            first = time.perf_counter()
        got += len(chunk)
        concealed += chunk.count(CONCEALED)
    last = time.perf_counter()
    if proc.wait(timeout=60) != 0:
        raise SystemExit(f"inject exited with {proc.returncode}")
    if masked and not concealed:
        raise SystemExit("nothing was concealed: the values did not reach inject's registry")
    return got / MIB / (last - first)


def concealer_alone(data: Path, values: list[str]) -> float:
    """MB/s of the concealer itself, fed 64 KiB reads in this process."""
    concealer = Concealer(values)
    blob = data.read_bytes()
    start = time.perf_counter()
    for at in range(0, len(blob), READ):
        concealer.feed(blob[at : at + READ])
    concealer.finish()
    return len(blob) / MIB / (time.perf_counter() - start)


def main() -> int:
    """Measure and print the three rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="MiB the child writes (default 50)")
    parser.add_argument("--values", type=int, default=10, help="secret values inject knows (default 10)")
    args = parser.parse_args()
    values = [f"bench-{secrets.token_hex(12)}" for _ in range(args.values)]
    with tempfile.TemporaryDirectory(prefix="inject-mask-bench-") as tmp:
        work = Path(tmp)
        data = work / "data.txt"
        make_data(data, args.mb * MIB, values)
        plain = through_inject(data, args.mb * MIB, values, masked=False, work=work)
        masked = through_inject(data, args.mb * MIB, values, masked=True, work=work)
        alone = concealer_alone(data, values)
    print(f"{args.mb} MiB, {args.values} values: unmasked {plain:.0f} MB/s, masked {masked:.0f} MB/s")
    print(f"concealer alone (64 KiB reads): {alone:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
