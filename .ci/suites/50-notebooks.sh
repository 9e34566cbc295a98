# The teaching notebooks (issue #8): each one executed headless by `make test-notebooks`, one case per notebook.
# The notebook packages (Jupyter, nbclient, matplotlib, graphviz) are not in the core `make deps`: install them here.
if bash tools/deps.sh --notebooks >"$LOG/notebooks-deps.log" 2>&1; then
  # The notebooks run qkvlab on one thread (notebooks/qkvlab_nb.py), so two run at once: the longest (04, the
  # studies at the paper's configuration, several minutes) in the background beside the others, one after another.
  # Each has its own working folder (build/notebooks/NAME).
  NB_LONG=notebooks/04_reproduce.ipynb
  [ -e "$NB_LONG" ] && run_check_bg "notebook-$(basename "$NB_LONG" .ipynb)" make --no-print-directory test-notebooks NB="$NB_LONG"
  for nb in notebooks/[0-9]*.ipynb; do
    [ "$nb" = "$NB_LONG" ] && continue
    run_check "notebook-$(basename "$nb" .ipynb)" make --no-print-directory test-notebooks NB="$nb"
  done
  # A student opens them with `jupyter notebook notebooks/`: the server starts and lists all four.
  run_check notebook-server make --no-print-directory check-notebook-server
  finish_checks
else
  tail -n 20 "$LOG/notebooks-deps.log"
  echo "ci: bash tools/deps.sh --notebooks failed"
  FAILED=$((FAILED + 1))
fi
