bench_migrate() { bench_die "migrate: not written yet"; }
