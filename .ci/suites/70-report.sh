# report.html (issue 20; app/report.h, mk/report.mk): a short study writes the page, headless chromium loads it from
# disk with the network off and checks it (tests/report/browser_test.py: one case per check it prints); then the same
# folder's page rewritten without Chart.js (the table fallback) is checked the same way.
# Browser and DevTools client are not core packages: tools/deps.sh --report installs them.

count_browser_checks() {  # file: adds one passed/failed case per PASS/FAIL line; none at all counts as one failure
  local file=$1 p f
  p=$(grep -c '^PASS ' "$file")
  f=$(grep -c '^FAIL ' "$file")
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "ci: no browser checks in $file"; fi
  PASSED=$((PASSED + p)); FAILED=$((FAILED + f))
  echo "ci: $(basename "$file" .log): $p passed, $f failed"
}

echo "== report: packages (chromium, python3-websocket)"
if bash tools/deps.sh --report >"$LOG/report-deps.log" 2>&1; then
  start=$SECONDS
  # make test-report: the study (demo-sized page, 20 steps) and the browser test on its page
  make --no-print-directory test-report REPORT_ARGS=--require REPORT_DIR=build/ci/report-study \
    >"$LOG/report-browser.log" 2>&1
  tail -n 30 "$LOG/report-browser.log"
  count_browser_checks "$LOG/report-browser.log"
  # The fallback page: same data, Chart.js absent at write time.
  rm -rf build/ci/report-fallback
  if [ -f build/ci/report-study/results.json ] && cp -r build/ci/report-study build/ci/report-fallback &&
    build/release/qkvlab report --dir build/ci/report-fallback --chart-js /nonexistent/chart.min.js \
      >"$LOG/report-fallback.log" 2>&1; then
    /usr/bin/python3 tests/report/browser_test.py build/ci/report-fallback --require >>"$LOG/report-fallback.log" 2>&1
    tail -n 20 "$LOG/report-fallback.log"
    count_browser_checks "$LOG/report-fallback.log"
  else
    tail -n 20 "$LOG/report-fallback.log"
    echo "ci: report fallback page FAILED"
    FAILED=$((FAILED + 1))
  fi
  echo "== report took $((SECONDS - start)) s"
else
  tail -n 20 "$LOG/report-deps.log"
  echo "ci: bash tools/deps.sh --report failed"
  FAILED=$((FAILED + 1))
fi
