# importbeat: `make run` to try it, `make test` to check it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVICES := $(PY) -m project.devservices run
export DJANGO_DEBUG ?= 1

# The system's PostgreSQL (Debian 12 ships 15): `make test` runs on it too the tests of the
# SQL written by hand: the importer's, the trigger's (rows.insert_where, its fifty-trigger
# race, its history event), the token's and the session's, the dashboard's, the lists' pages
# and counts (the run lists' through listed_runs and rows.instance), beat's dispatch, the
# reconciler's, the saved secrets', the owner's cap's and /metrics'; the sweep's partial indexes
# (0041, 0043) and the dataset's kept field names (0044).
SYSTEM_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
PGTEST_FILES ?= tests/test_importer_*.py tests/test_postgres_*.py \
	tests/test_api_manual_run.py tests/test_reliability_concurrent_manual_triggers.py \
	tests/test_api_auth.py tests/test_dashboard_rows_are_what_the_template_showed.py \
	tests/test_dashboard_page.py tests/test_dashboard_health_and_next_runs.py \
	tests/test_dashboard_lists_read_their_rows_without_model_instances.py \
	tests/test_api_imports_list_chooses_its_page_by_ids.py \
	tests/test_api_imports_show_their_active_run.py tests/test_api_counts_of_long_lists.py \
	tests/test_api_stats.py tests/test_beat_dispatches_due_ticks.py \
	tests/test_reconcile_recovers_a_lost_dispatch.py \
	tests/test_reconcile_sends_a_lost_retry_again_once.py \
	tests/test_a_replaced_credential_is_hidden_in_the_runs_saved_under_it.py \
	tests/test_security_owner_cap.py tests/test_metrics_endpoint.py \
	tests/test_metrics_at_ten_thousand_imports.py \
	tests/test_email_digest.py tests/test_health_is_degraded_while_notifications_are_stuck.py \
	tests/test_imports_needing_attention_are_read_by_a_statement_compiled_once.py \
	tests/test_a_signed_in_request_reads_its_session_and_user_without_compiling.py \
	tests/test_history_events_are_the_rows_auditlog_writes.py \
	tests/test_api_run_lists_choose_their_page_by_ids.py \
	tests/test_rows_make_the_instances_from_db_makes.py \
	tests/test_a_datasets_record_count_is_kept_by_its_writers.py \
	tests/test_an_import_with_a_long_history_is_deleted_in_a_few_statements.py \
	tests/test_admin_deletions_count_what_goes_along.py tests/test_api_finding_records.py \
	tests/test_api_deliveries_history_and_imports_follow_a_cursor_past_deleted_rows.py \
	tests/test_writers_of_many_imports_lock_them_in_id_order.py \
	tests/test_deleting_a_run_while_its_worker_ends_a_run_is_no_deadlock.py \
	tests/test_admin_run_now_queues_a_large_selection_in_batches.py \
	tests/test_an_import_edited_while_its_run_runs_merges_as_it_now_says_or_not_at_all.py \
	tests/test_next_runs_during_an_outage_are_chosen_and_sorted_by_the_run_beat_makes.py \
	tests/test_overdue_imports_the_next_runs_could_not_place_are_counted_with_since_when_beat_is_down.py \
	tests/test_a_webhook_being_sent_is_not_posted_again_by_a_copy_of_its_message.py \
	tests/test_a_message_that_comes_before_a_notifications_next_attempt_sends_nothing.py \
	tests/test_a_server_whose_dates_are_not_iso_runs_imports_and_answers.py \
	tests/test_a_runs_rows_wait_for_the_disk_when_the_role_commits_without_waiting.py \
	tests/test_a_runs_commit_keeps_the_strongest_level_the_worker_or_the_database_asks_for.py \
	tests/test_a_waiting_run_deleted_with_its_import_is_revoked_in_flower.py \
	tests/test_the_sweeps_scans_of_lost_ends_read_their_own_indexes.py \
	tests/test_an_export_of_a_wide_dataset_reads_its_fields_from_the_dataset.py
# The tests of SQL that differs between PostgreSQL versions, which `make pgmatrix` runs on 14
# and 17 (the suite covers 16, `make pgtest` 15): regexp_count, new in 15, failed every file with
# a quoted line break on 14 while the suite passed on 16 and 15.
PGMATRIX_FILES ?= tests/test_postgres_*.py tests/test_importer_awkward_files.py \
	tests/test_importer_both_paths_read_a_file_alike.py tests/test_importer_unchanged_reimport.py \
	tests/test_importer_repeated_keys.py tests/test_importer_column_types.py \
	tests/test_security_long_lines.py \
	tests/test_a_server_older_than_14_is_refused_in_importbeats_words.py \
	tests/test_api_check_blank_lines_before_the_header_are_skipped_as_a_run_skips_them.py \
	tests/test_the_sweeps_scans_of_lost_ends_read_their_own_indexes.py \
	tests/test_an_export_of_a_wide_dataset_reads_its_fields_from_the_dataset.py
# Test runners in parallel (pytest-xdist; each has its own database and Redis database): most
# tests wait on real processes (a worker's start, a tick, a lease), so more runners than the two
# cores overlap those waits: the suite ran 9:42 and 1:30 (PostgreSQL 15) with three, against
# 13:52 to 16:05 and 2:00 with two, on this kind of machine under the same load; grown to
# 1,846 tests, it ran 11:11 with four against 14:35 with three (both beside other work on the
# machine); grown to 2,287 tests, it ran 15:46 with four, nothing else running, over its
# 15-minute budget, so five. 0: one, in-process (what `-s` needs to show a test's output).
TEST_JOBS ?= 5
XDIST := -n $(TEST_JOBS) --dist worksteal

.PHONY: help install browser sftp compose faketime pgbouncer german run manage shell psql test pgtest pgmatrix bench lint format clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned requirements (idempotent)

run: install ## start PostgreSQL/Redis if needed, migrate, seed the demo, run web+worker+beat+flower
	mkdir -p .run
	$(SERVICES) --write-env -- bash scripts/run.sh

# A second terminal while `make run` is up: settings.py reads .run/services.env by itself (or
# the file IMPORTBEAT_SERVICES_ENV names, as settings.py, devservices and scripts/run.sh do).
SERVICES_ENV := $(or $(IMPORTBEAT_SERVICES_ENV),.run/services.env)
STACK_UP := test -f "$(SERVICES_ENV)" || test -n "$$DATABASE_URL" \
	|| { echo "start \`make run\` first (no $(SERVICES_ENV))"; exit 1; }

manage: install ## manage.py against the running stack: make manage ARGS="run_import 1"
	@$(STACK_UP)
	$(PY) manage.py $(ARGS)

shell: install ## a Django shell against the running stack
	@$(STACK_UP)
	$(PY) manage.py shell

# DATABASE_URL when set, as settings.py reads it over the stack's file (psql opened libpq's
# default database, another one, when only DATABASE_URL was there).
psql: install ## psql on the running stack's database
	@$(STACK_UP)
	@PSQL=$$(command -v psql || echo "$$($(PY) -c 'import os, pgserver; print(os.path.dirname(pgserver.__file__))')/pginstall/bin/psql"); \
		URL=$$(if [ -n "$$DATABASE_URL" ]; \
			then $(PY) -c 'import os; from project.devservices import psql_url; print(psql_url(os.environ["DATABASE_URL"]))'; \
			else sed -n 's/^PSQL_URL=//p' "$(SERVICES_ENV)"; fi); \
		$$PSQL "$$URL"

compose: ## install Debian's docker-compose, which the suite checks docker-compose.yml with
	command -v docker-compose >/dev/null \
		|| (apt-get update && apt-get install -y --no-install-recommends docker-compose) \
		|| echo "docker-compose could not be installed: the compose file tests will fail"

browser: ## install Debian's chromium for the dashboard's browser test (once; needs apt as root)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "chromium could not be installed: the browser test will fail"

sftp: ## install Debian's OpenSSH server, which the SFTP tests start on a free port (once; apt as root)
	test -x /usr/sbin/sshd || (apt-get update && apt-get install -y --no-install-recommends openssh-server) \
		|| echo "openssh-server could not be installed: the SFTP tests will fail"

faketime: ## install Debian's libfaketime, which the clock tests start a beat and a worker under (once; apt as root)
	ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends libfaketime) \
		|| echo "libfaketime could not be installed: the clock tests will fail"

pgbouncer: ## install Debian's PgBouncer, which the pooler tests start on a free port (once; apt as root)
	test -x /usr/sbin/pgbouncer || (apt-get update && apt-get install -y --no-install-recommends pgbouncer) \
		|| echo "pgbouncer could not be installed: the PgBouncer tests will fail"

german: ## generate the de_DE.UTF-8 locale, which the test of a server speaking German starts its cluster in (once; root)
	locale -a 2>/dev/null | grep -qx de_DE.utf8 || localedef -i de_DE -f UTF-8 de_DE.UTF-8 \
		|| echo "the de_DE.UTF-8 locale could not be made: the test of a server speaking German will be skipped"

test: install browser sftp compose faketime pgbouncer german ## run the whole test suite (PostgreSQL/Redis from the env or embedded)
	mkdir -p .run
	$(SERVICES) --test -- $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ]; then $(MAKE) --no-print-directory pgtest pgmatrix; fi

pgtest: install ## the tests of hand-written SQL (PGTEST_FILES) on the system PostgreSQL, if it answers
	@# The check itself failing (not the server) fails the target: a renamed function once skipped
	@# these tests as if no server answered.
	@problem=$$($(PY) -c 'from project.devservices import database_problem; print(database_problem("$(SYSTEM_DATABASE_URL)") or "")') || exit 1; \
	if [ -z "$$problem" ]; then \
		echo "the tests of hand-written SQL on the system PostgreSQL ($(SYSTEM_DATABASE_URL))"; \
		DATABASE_URL=$(SYSTEM_DATABASE_URL) $(SERVICES) --test -- $(PY) -m pytest $(XDIST) $(PGTEST_FILES); \
	else \
		echo "no PostgreSQL answers at $(SYSTEM_DATABASE_URL) ($$problem): the suite ran on one server only"; \
	fi

pgmatrix: install ## the version-sensitive tests (PGMATRIX_FILES) on PostgreSQL 14 and 17, from the npm registry
	PY=$(PY) bash scripts/pgmatrix.sh $(XDIST) $(PGMATRIX_FILES)

bench: install ## run the benchmarks under tests/bench and print their figures
	mkdir -p .run
	$(SERVICES) --test -- $(PY) -m pytest tests/bench -s -p no:cacheprovider -o python_files='bench_*.py' -o python_functions='bench_*' $(PYTEST_ARGS)

lint: install ## ruff check and format check; the import contracts (pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the virtualenv and the embedded servers' data
	rm -rf $(VENV) .run
