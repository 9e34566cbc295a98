# ARM64 under emulation (mk/arm64.mk; docs/DESIGN.md, "Portability"), sourced by .ci/run after the reliability
# suites (it uses their rel_build): the aarch64 cross build of qkvlab and of the chosen tests, those tests under
# qemu-aarch64-static (in the background), and one short study on x86 and on arm64 whose numbers must agree.
echo "== arm64: packages (bash tools/deps.sh --arm64: the cross compiler, arm64 zlib, qemu)"
if bash tools/deps.sh --arm64 >"$LOG/arm64-deps.log" 2>&1; then
  if rel_build arm64 ARCH=arm64 all; then
    # qemu runs on about one core: the emulated tests go on in the background beside the notebooks (which run
    # on one thread too) and are counted when 50-notebooks.sh, or the end of .ci/run, calls finish_checks.
    run_suite_bg arm64 make --no-print-directory test-arm64
    run_check arm64-study make --no-print-directory study-arm64
  fi
else
  tail -n 20 "$LOG/arm64-deps.log"
  echo "ci: bash tools/deps.sh --arm64 failed"
  FAILED=$((FAILED + 1))
fi
