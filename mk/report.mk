# report.html in a real browser (app/report.h, tests/report/browser_test.py). Packages: bash tools/deps.sh --report
# (chromium, python3-websocket; Chart.js comes with the core packages).
#   make test-report        a short study with the demo's model and sizes (20 steps instead of 120: the test is about
#                           the page, not the accuracy) into build/report-test, then the browser test on its page
#   make report-screenshot  the README's picture docs/img/report.png, from runs/demo (run make demo first)
# REPORT_ARGS passes flags to the browser test (--require: fail instead of skipping when no browser is installed).
REPORT_PYTHON ?= /usr/bin/python3
REPORT_DIR    ?= build/report-test
REPORT_STUDY  ?= --task reverse --variants paper-synthetic --seq-len 32 --steps 20 --seeds 3 --threads 1
REPORT_ARGS   ?=

.PHONY: test-report report-screenshot report-build

report-build:
	$(MAKE) --no-print-directory MODE=release build/release/qkvlab

test-report: report-build
	rm -rf $(REPORT_DIR)
	build/release/qkvlab study $(REPORT_STUDY) --out $(REPORT_DIR) >$(REPORT_DIR).log 2>&1 || { tail -n 20 $(REPORT_DIR).log; exit 1; }
	$(REPORT_PYTHON) tests/report/browser_test.py $(REPORT_DIR) $(REPORT_ARGS)

report-screenshot: report-build
	build/release/qkvlab report --dir runs/demo
	$(REPORT_PYTHON) tests/report/browser_test.py runs/demo --require --screenshot docs/img/report.png
