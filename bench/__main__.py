"""`python -m bench` (= the `msabench` console script). See bench/cli/ for the subcommands."""

from bench.cli import main

if __name__ == "__main__":
    main()
