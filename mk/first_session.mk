# The README's "A first session", run as written in a fresh clone (tools/first_session.sh; CI:
# .ci/suites/55-first-session.sh).
#   make first-session              reuses build/release/qkvlab (built here first if missing)
#   FIRST_SESSION_FLAGS=--build     builds qkvlab inside the clone instead, as a new user does
.PHONY: first-session
first-session: $(if $(filter --build,$(FIRST_SESSION_FLAGS)),,build/release/qkvlab)
	bash tools/first_session.sh $(FIRST_SESSION_FLAGS)
