# The README's "A first session" (issue 17): every command as written, in a fresh clone of the repository, with the
# qkvlab that the release build above produced (tools/first_session.sh; a few minutes: 300 LM steps, 2 epochs of
# REVERSE, a 6-variant x 3-seed study of 100 steps).
run_check first-session timeout 1200 bash tools/first_session.sh
# Nothing a user reads or runs may point outside the repository (tests/ and .ci/ may use ../shared and skip).
no_outside_paths() {
  ! grep -rn "\.\./shared" README.md docs app plot models nn autograd tensor notebooks bench tools Makefile mk
}
run_check no-outside-paths no_outside_paths
