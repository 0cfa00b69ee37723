# Sourced by .ci/test and .ci/run for their closing line.
# vitest_counts LOG prints "PASSED FAILED", the sums of vitest's "Tests  [F failed | ]P passed (N)"
# lines in LOG, also where turbo prefixes them with the package ("@tl/cli:test:       Tests  …").
vitest_counts() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '{
    for (t = 1; t < NF; t++) if ($t == "Tests" && $(t + 1) ~ /^[0-9]+$/) break
    for (i = t + 1; i < NF; i++) { if ($(i + 1) == "passed") p += $i; if ($(i + 1) == "failed") f += $i }
  } END { print p + 0, f + 0 }'
}

# closing_line LOG STATUS prints "tests: N passed, N failed". A step that failed without a
# failing vitest test (install, typecheck, a test file that does not load) counts as one failure,
# so the line never says 0 failed for a run that failed.
closing_line() {
  local passed failed
  read -r passed failed <<<"$(vitest_counts "$1")"
  if [ "$2" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  echo "tests: $passed passed, $failed failed"
}
