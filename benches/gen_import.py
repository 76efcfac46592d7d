#!/usr/bin/env python3
"""Writes N list-format lines (the 5-field contact of benches/common) for `tidemark import`.

    python3 benches/gen_import.py 1000000 > /tmp/contacts-1m.jsonl
"""
import json
import sys

CITIES = ["Lisbon", "Oslo", "Lyon", "Turin", "Gdansk", "Leeds", "Porto", "Ghent"]

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
out = sys.stdout
for i in range(n):
    fields = {"name": f"Person {i}", "email": f"person{i}@example.com", "n": i, "vip": i % 7 == 0, "city": CITIES[i % 8]}
    out.write(json.dumps({"id": f"r{i:07}", "fields": fields}, separators=(",", ":")) + "\n")
