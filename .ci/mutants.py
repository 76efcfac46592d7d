#!/usr/bin/env python3
"""The mutation check: builds deliberately broken versions of tidemark and runs
the reliability suites against each. A suite that still passes on a broken
build could not have caught that bug. Writes the results to
target/reliability/mutants.json (read by .ci/reliability-report.py).

    .ci/mutants.py [MUTANT ...]     (default: every mutant)

Each mutant is one exact text replacement in one source file; the script
fails loudly when the text is no longer there (the code moved: update the
mutant), and always puts the file back.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MUTANTS = {
    "ack-before-commit": {
        "what": "the client marks a push batch acknowledged when it sends it, before the server committed it",
        "file": "src/protocol/session.rs",
        "find": "let ops = pending.iter().map(|p| WireOp::from_op(&p.op)).collect();",
        "replace": "let ops = pending.iter().map(|p| WireOp::from_op(&p.op)).collect();"
         " store.acknowledge(pending.last().expect(\"a push has ops\").pos, &[])?;",
    },
    "no-op-id-dedupe": {
        "what": "the server stores an op pushed again under a new seq instead of answering its first seq",
        "file": "src/server/store/redb/append.rs",
        "find": "if let Some(seq) = index.get((id, op_id))?.map(|v| v.value()) {",
        "replace": "if let Some(seq) = index.get((id, op_id))?.map(|v| v.value()).filter(|_| false) {",
    },
    "watermark-before-apply": {
        "what": "the pulled watermark moves to the end of a page whose last op was not applied",
        "file": "src/protocol/session.rs",
        "find": "let report = store.apply_page(&PulledPage {",
        "replace": "let mut ops = ops; ops.pop(); let report = store.apply_page(&PulledPage {",
    },
    "no-history-check": {
        "what": "the server takes every pushed change without checking it against the record's history",
        "file": "src/server/store/redb/append.rs",
        "find": "let known = match history.check(collection, record, &new.header)? {",
        "replace": "let _ = history.check(collection, record, &new.header)?;"
        " let known = match Ok::<Known, OpRefusal>(Known::New) {",
    },
}

# The suites each mutant runs against: (name, cargo test arguments, environment).
SUITES = [
    ("simulation", ["--test", "simulation"], {"TIDEMARK_SIM_SEEDS": "200"}),
    ("convergence_server", ["--test", "convergence_server"], {}),
    ("sync_recovery", ["--test", "sync_recovery"], {}),
    ("crash_loop", ["--test", "crash_loop"], {"TIDEMARK_CRASH_LOOP_KILLS": "60"}),
]


def run_suite(args, env):
    started = time.time()
    proc = subprocess.run(
        ["cargo", "test", "-q", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc.returncode, round(time.time() - started, 1), proc.stdout


def first_failure(output):
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if "panicked at" in line:
            return " ".join(l.strip() for l in lines[i : i + 2])
    return None


def main():
    names = sys.argv[1:] or list(MUTANTS)
    # proptest saves the failures it finds on a broken build: they are not regressions.
    saved = {p: p.read_text() for p in ROOT.glob("tests/*.proptest-regressions")}
    results = []
    for name in names:
        mutant = MUTANTS[name]
        path = ROOT / mutant["file"]
        original = path.read_text()
        if original.count(mutant["find"]) != 1:
            sys.exit(f"mutant {name}: the text to break is not (once) in {mutant['file']}: update the mutant")
        try:
            path.write_text(original.replace(mutant["find"], mutant["replace"]))
            build = subprocess.run(
                ["cargo", "test", "--no-run", "-q", *sum((s[1] for s in SUITES), [])],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if build.returncode != 0:
                sys.exit(f"mutant {name} does not build:\n{build.stdout[-3000:]}")
            caught = {}
            for suite, args, env in SUITES:
                code, seconds, output = run_suite(args, env)
                caught[suite] = {"caught": code != 0, "seconds": seconds, "failure": first_failure(output)}
                print(f"{name} x {suite}: {'CAUGHT' if code else 'missed'} ({seconds} s)", flush=True)
        finally:
            path.write_text(original)
            for p in ROOT.glob("tests/*.proptest-regressions"):
                if p not in saved:
                    p.unlink()
            for p, text in saved.items():
                p.write_text(text)
        results.append({"mutant": name, "what": mutant["what"], "file": mutant["file"], "suites": caught})
    out = ROOT / "target" / "reliability"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutants.json").write_text(json.dumps(results, indent=2))
    missed = [r["mutant"] for r in results if not any(s["caught"] for s in r["suites"].values())]
    if missed:
        sys.exit(f"no suite caught: {', '.join(missed)}")
    print("every mutant was caught by at least one suite")


if __name__ == "__main__":
    main()
