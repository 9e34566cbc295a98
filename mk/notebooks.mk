# The teaching notebooks (notebooks/*.ipynb), run headless by nbclient with Debian's python3.
#   make notebooks        re-executes every notebook in place (refreshes the committed outputs)
#   make test-notebooks   executes each into a temporary copy and fails on any cell error
#   make test-notebooks NB=notebooks/01_autograd.ipynb   just one
#   make check-notebook-server   starts `jupyter notebook` headless on a free port, checks over HTTP that it lists
#                         every notebook, and stops it (what a student does: jupyter notebook notebooks/)
# Packages: the NOTEBOOKS list of tools/deps.sh (bash tools/deps.sh --all).
NB ?= $(sort $(wildcard notebooks/[0-9]*.ipynb))
NB_PYTHON ?= /usr/bin/python3

.PHONY: notebooks test-notebooks notebooks-build check-notebook-server

# The notebooks compile against the release library and call the release qkvlab, whatever MODE says.
notebooks-build:
	$(MAKE) --no-print-directory MODE=release build/release/qkvlab

notebooks: notebooks-build
	$(NB_PYTHON) notebooks/run_notebooks.py --inplace $(NB)

test-notebooks: notebooks-build
	$(NB_PYTHON) notebooks/run_notebooks.py $(NB)

check-notebook-server:
	$(NB_PYTHON) notebooks/check_server.py
