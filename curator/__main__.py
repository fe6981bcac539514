from curator.cli import main

if __name__ == "__main__":  # vLLM's engine starts processes that re-import the main module
    main()
