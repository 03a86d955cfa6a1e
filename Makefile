# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# PostgreSQL run of the suite; this machine kind serves it on 127.0.0.1:5432.
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/ipsadmin

.PHONY: run test test-sqlite test-postgres venv clean messages

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	PY=$(PY) bash scripts/run.sh

test: test-sqlite test-postgres

test-sqlite: $(STAMP)
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

# Skipped with a message when no PostgreSQL answers, except in CI.
test-postgres: $(STAMP)
	@if $(PY) scripts/pg_ready.py "$(PG_TEST_URL)"; then \
		DATABASE_URL="$(PG_TEST_URL)" $(PY) -m pytest $(PYTEST_ARGS); \
	elif [ "$$CI" = "true" ]; then \
		echo "PostgreSQL is not reachable at $(PG_TEST_URL), and CI must test on it." >&2; exit 1; \
	else \
		echo "PostgreSQL is not reachable at $(PG_TEST_URL): skipping the PostgreSQL run."; \
	fi

# The Italian catalogue: extract the marked strings, then compile what was translated
# (needs GNU gettext; locale/it/LC_MESSAGES/django.mo is committed, so running does not).
messages: $(STAMP)
	$(PY) manage.py makemessages --locale it --no-location --no-obsolete --ignore '.venv/*' --ignore 'var/*' --ignore 'staticfiles/*'
	$(PY) manage.py compilemessages --locale it --ignore '.venv/*'

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles var
