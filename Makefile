# Shortcuts; tests/setup.sh installs the system and Python packages and exports PYTHON.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

.PHONY: test setup build demo clean

test:
	bash tests/run.sh

setup:
	bash tests/setup.sh

build:
	. tests/setup.sh && "$$PYTHON" -m pip install --no-build-isolation -e .

demo:
	bash tests/demo.sh

clean:
	rm -rf build django_nativecache/_native*.so
