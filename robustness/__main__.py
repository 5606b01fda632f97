from robustness.cli import run

run()
