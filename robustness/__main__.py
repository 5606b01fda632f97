from robustness.cli import main

main()
