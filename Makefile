VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test browsers clean bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/postoffice --config postoffice.toml serve

# Debian's chromium for the panel's browser tests (Playwright drives it; no browser download).
browsers:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium for the browser tests (apt-get install chromium)"; fi; }

test: $(STAMP) browsers
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	@ls bench/*.py | xargs -n1 $(PY)

clean:
	rm -rf $(VENV) data .pytest_cache
