from .cli import main

if __name__ == "__main__":  # worker processes (postoffice/cpu.py) must not run the CLI again
    main()
