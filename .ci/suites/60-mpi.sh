# MPI data-parallel training (issue 11; mk/mpi.mk, models/distributed.h, tests/mpi/): installs Open MPI, builds
# build/mpi with mpicxx, and runs the 2-rank tests and a command-line check under
# `mpirun --allow-run-as-root --oversubscribe -np 2` (loopback only).
echo "== mpi: packages and build (build/mpi)"
if apt-get install -y -qq --no-install-recommends libopenmpi-dev openmpi-bin >"$LOG/mpi-packages.log" 2>&1 &&
  make -j"$(nproc)" MPI=1 >"$LOG/build-mpi.log" 2>&1; then
  run_check mpi-data-parallel timeout 900 make MPI=1 test-mpi
  run_check mpi-command-line timeout 600 bash tests/mpi/cli_check.sh
else
  tail -n 40 "$LOG/mpi-packages.log" "$LOG/build-mpi.log"
  echo "ci: mpi build FAILED"
  FAILED=$((FAILED + 1))
fi
