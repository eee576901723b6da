"""OpenKVS benchmarks: see bench/README.md; run bench/run_all.py."""
