from deleverage.cli import main

main()
