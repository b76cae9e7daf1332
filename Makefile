# The two set-up commands of README.md, plus conveniences.
#   make demo   install missing packages, build, start a local three-site cluster
#   make test   install everything, build, run every test (what CI runs)
.PHONY: demo test build down clean format

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	scripts/build.sh build

down:
	deploy/cluster.sh down

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-asan build-fuzz run
