VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-deps clean bench bench-deps

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/postoffice --config postoffice.toml serve

# Debian packages the end-to-end tests drive: chromium (Playwright drives it; no browser
# download), and real mail clients. Installed only when missing; needs root (CI runs as root).
# As root a missing one fails its tests, as another user it skips them (tests/support/tools.py).
# --no-install-recommends leaves out what some clients need, so it is named here:
# swaks needs Net::SSLeay and IO::Socket::SSL for STARTTLS and port 465; mbsync (isync) needs
# the Cyrus SASL modules for AUTHENTICATE PLAIN. (The others build TLS and SASL in.) curl is the
# HTTPS client turned away from the mail ports (tests/e2e/test_tls_adversarial.py). rspamd is
# the spam filter tests/e2e/test_rspamd.py starts itself (its own config and ports; the Debian
# service is not used and need not run); so is clamd (clamav-daemon, tests/e2e/test_clamav.py,
# with a one-signature database the test writes: freshclam's download is not needed).
DEBIAN_TEST_PACKAGES := chromium fetchmail swaks libnet-ssleay-perl libio-socket-ssl-perl \
	isync libsasl2-modules publicsuffix mutt offlineimap getmail6 msmtp sieve-connect curl rspamd \
	clamav-daemon
test-deps:
	@missing=""; for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (tests that need them are skipped)"; fi; fi

test: $(STAMP) test-deps
	$(VENV)/bin/pytest -q

# The benchmarks compare with Postfix and Dovecot, run from temp dirs on loopback ports.
bench-deps:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd >/dev/null; fi

bench: $(STAMP) bench-deps
	@ls bench/*.py | xargs -n1 $(PY)

clean:
	rm -rf $(VENV) data .pytest_cache
