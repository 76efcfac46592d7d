#!/usr/bin/env python3
"""Runs the reliability suites and writes RELIABILITY.md from what they did:
the seeded simulation (server restores and wipes included), the real-process crash loop, the fuzz search, the hostile HTTP cases and the
mutation check. Every figure in RELIABILITY.md comes from this script's last
run; run it before committing a change to any of them.

    .ci/reliability-report.py [--seeds N] [--fuzz-seconds S] [--skip-mutants]

Takes 15 to 30 minutes on a 2-core machine (the mutation check builds four
broken versions).
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "reliability"


def run(cmd, env=None, check=False):
    started = time.time()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seconds = round(time.time() - started, 1)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}")
    return proc.returncode, seconds, proc.stdout


def passed_tests(output):
    return sum(int(n) for n in re.findall(r"test result: \w+\. (\d+) passed", output))


def simulation(seeds):
    code, seconds, out = run(["cargo", "test", "-q", "--test", "simulation"], {"TIDEMARK_SIM_SEEDS": str(seeds)})
    return {"seeds": seeds, "ok": code == 0, "seconds": seconds, "failure": first_panic(out)}


def first_panic(output):
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if "panicked at" in line and i + 1 < len(lines):
            return lines[i + 1].strip()
    return None


def crash_loop():
    code, seconds, out = run(["cargo", "test", "-q", "--test", "crash_loop", "--", "--nocapture"])
    kills = sum(int(n) for n in re.findall(r"\((\d+) kills\)", out))
    summary = re.findall(r"crash loop seed \d+: (.*)", out)
    return {"ok": code == 0, "seconds": seconds, "kills": kills, "summary": summary[0] if summary else None}


def fuzz(seconds):
    code, took, out = run([".ci/fuzz-smoke.sh", str(seconds)])
    targets = re.findall(r"== fuzzing (\S+) for", out)
    execs = [int(n) for n in re.findall(r"stat::number_of_executed_units: (\d+)", out)]
    return {"ok": code == 0, "seconds": took, "per_target": dict(zip(targets, execs)), "seconds_per_target": seconds}


def hostile():
    code, seconds, out = run(
        ["cargo", "test", "-q", "--test", "http_hostile", "--test", "http_defences", "--test", "fuzz_corpus"]
    )
    return {"ok": code == 0, "seconds": seconds, "tests": passed_tests(out)}


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--fuzz-seconds", type=int, default=45)
    parser.add_argument("--skip-mutants", action="store_true", help="reuse target/reliability/mutants.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    commit = run(["git", "rev-parse", "--short", "HEAD"])[2].strip()
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"])[2].strip() != ""
    run(["cargo", "build", "--all-targets", "-q"], check=True)
    print("running the suites (15 to 30 minutes)", flush=True)

    report = {
        "simulation": simulation(args.seeds),
        "crash_loop": crash_loop(),
        "fuzz": fuzz(args.fuzz_seconds),
        "hostile": hostile(),
    }
    if not args.skip_mutants:
        code, _, out = run([sys.executable, ".ci/mutants.py"])
        if code != 0 and "no suite caught" not in out:
            sys.exit(f"the mutation check could not run:\n{out[-3000:]}")
    mutants_file = OUT / "mutants.json"
    report["mutants"] = json.loads(mutants_file.read_text()) if mutants_file.exists() else []
    (OUT / "report.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, commit + ("+changes" if dirty else ""))


def yes(ok):
    return "green" if ok else "**FAILED**"


def write_markdown(r, commit):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sim, crash, fz, hos = r["simulation"], r["crash_loop"], r["fuzz"], r["hostile"]
    lines = [
        "# Reliability",
        "",
        "What tidemark's tests try, and what they found. Written by `.ci/reliability-report.py`",
        f"from its last run: commit {commit}, {today}, {machine()}.",
        "Do not edit by hand: run the script.",
        "",
        "Invariants every suite checks: no acknowledged op is lost and every op the server",
        "committed reaches every member; each op is stored once on the server and once in each",
        "replica's log; after faults heal and queues drain, all replicas and the server hold the",
        "same records, each view equals its rebuild from the log, and conflicts are listed the",
        "same everywhere; watermarks never move backwards and the pending count is the queue's",
        "length; no panic and no 5xx on any input.",
        "",
        "| suite | what it ran | result | time |",
        "|---|---|---|---|",
        f"| seeded simulation (`TIDEMARK_SIM_SEEDS={sim['seeds']} cargo test --test simulation`) | {sim['seeds']} seeds × 60 steps, 3–5 replicas, server restores and wipes included | {yes(sim['ok'])} | {sim['seconds']} s |",
        f"| real-process crash loop (`cargo test --test crash_loop`) | {crash['kills']} SIGKILLs of clients and the server | {yes(crash['ok'])} | {crash['seconds']} s |",
        f"| fuzz search (`.ci/fuzz-smoke.sh {fz['seconds_per_target']}`) | "
        + ", ".join(f"{t}: {n:,} inputs" for t, n in fz["per_target"].items())
        + f" | {yes(fz['ok'])} | {fz['seconds']} s |",
        f"| hostile HTTP and corpus replays (`http_hostile`, `http_defences`, `fuzz_corpus`) | {hos['tests']} tests | {yes(hos['ok'])} | {hos['seconds']} s |",
        "",
    ]
    if crash.get("summary"):
        lines += [f"Crash loop: {crash['summary']}.", ""]
    if sim.get("failure"):
        lines += [f"Simulation failure: `{sim['failure']}`", ""]
    lines += [
        "",
        "## Mutation check (`.ci/mutants.py`)",
        "",
        "Each mutant is a deliberately broken build; a suite that still passes on it could not",
        "catch that bug. Reproduce one with `.ci/mutants.py NAME`.",
        "",
        "| mutant | what is broken | " + " | ".join(s for s in (r["mutants"][0]["suites"] if r["mutants"] else {})) + " |",
        "|---|---|" + "---|" * len(r["mutants"][0]["suites"] if r["mutants"] else {}),
    ]
    for m in r["mutants"]:
        cells = " | ".join("caught" if s["caught"] else "missed" for s in m["suites"].values())
        lines.append(f"| `{m['mutant']}` | {m['what']} | {cells} |")
    lines += [
        "",
        "## Reproducing",
        "",
        "- One simulation seed: `TIDEMARK_SIM_SEED=S cargo test --test simulation seeds_shard_0`",
        "  prints the trace of steps when it fails. A long run:",
        "  `TIDEMARK_SIM_SEEDS=20000 cargo test --release --test simulation`;",
        "  `TIDEMARK_SIM_SERVER_LOSS=0` leaves out the server's restores and wipes.",
        "- The crash loop: `TIDEMARK_CRASH_LOOP_SEED=S cargo test --test crash_loop` replays one",
        "  run (its seed is printed); `TIDEMARK_CRASH_LOOP_KILLS=N` sets how many kills.",
        "- Fuzzing: `.ci/fuzz-smoke.sh SECONDS`; a crash's input lands in `fuzz/artifacts/`,",
        "  fails `.ci/run`, and is replayed by `cargo test --test fuzz_corpus` once committed.",
        "- The whole report: `.ci/reliability-report.py`.",
        "",
    ]
    (ROOT / "RELIABILITY.md").write_text("\n".join(lines))
    print("RELIABILITY.md written")


if __name__ == "__main__":
    main()
