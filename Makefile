# The two set-up commands of README.md, plus conveniences.
#   make demo   install missing packages, build, start a local three-site cluster
#   make test   install everything, build, run every test (what CI runs)
#   make soak   build, then the multi-site lab's random fault rounds with the
#               convergence check after each: MINUTES=30 SEED=7 SOAK_ARGS=...
#               (see tests/multisite/lab/soak.py)
.PHONY: demo test build down clean format soak

MINUTES ?= 30
SEED ?= 1

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	scripts/build.sh build

down:
	deploy/cluster.sh down

soak: build
	MERIDIAN_BUILD_DIR=build /usr/bin/python3 tests/multisite/lab/soak.py \
	    --minutes $(MINUTES) --seed $(SEED) $(SOAK_ARGS)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-asan build-fuzz build-tsan build-upgrade-* run
