# The lab's two commands: `make up` and `make test`. Everything they need is bootstrapped.
SHELL := /bin/sh
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: up test test-region down host images venv lint unit clean

up: host images venv
	$(VENV)/bin/lgcloud up --stack $(STACK)
	$(VENV)/bin/lgcloud exporter --stack $(STACK) --detach
	$(VENV)/bin/lgcloud configure --stack $(STACK)
	@echo "lab $(STACK) ready: ssh -F .lgcloud/$(STACK)/ssh_config a-city-terminal, then curl https://jumin.a-city.lgwan.test/healthz"

test: host images venv
	$(VENV)/bin/pytest -p no:cacheprovider

down: venv
	$(VENV)/bin/lgcloud exporter --stack $(STACK) --stop
	$(VENV)/bin/lgcloud down --stack $(STACK)

host:
	@scripts/host-setup.sh

images: host
	@images/build.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The drills of a lab above sshd's 10 sessions per connection (stack `region`, 12 municipalities):
# brings that lab up beside dev, runs site-loss and failback, removes it. About 12 minutes.
test-region: host images venv
	$(VENV)/bin/pytest -p no:cacheprovider -m region

# Tests that need no Docker Engine: unit tests of the program and the config.
unit: venv
	$(VENV)/bin/pytest -p no:cacheprovider -m "not live and not engine and not region"

# Everything the lab made, its data volumes included (the keys and passwords in .lgcloud go too,
# and data without them could not be used).
clean: venv
	$(VENV)/bin/lgcloud exporter --stack $(STACK) --stop
	$(VENV)/bin/lgcloud down --stack $(STACK) --delete-data
	rm -rf $(VENV) .lgcloud
