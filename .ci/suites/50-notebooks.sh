# The teaching notebooks (issue #8): each one executed headless by `make test-notebooks`, one case per notebook.
# The notebook packages (Jupyter, nbclient, matplotlib, graphviz) are not in the core `make deps`: install them here.
if bash tools/deps.sh --notebooks >"$LOG/notebooks-deps.log" 2>&1; then
  for nb in notebooks/[0-9]*.ipynb; do
    run_check "notebook-$(basename "$nb" .ipynb)" make --no-print-directory test-notebooks NB="$nb"
  done
  # A student opens them with `jupyter notebook notebooks/`: the server starts and lists all four.
  run_check notebook-server make --no-print-directory check-notebook-server
else
  tail -n 20 "$LOG/notebooks-deps.log"
  echo "ci: bash tools/deps.sh --notebooks failed"
  FAILED=$((FAILED + 1))
fi
