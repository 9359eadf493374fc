"""The `ktransfer` command: `ktransfer assets ...`, `ktransfer demo`."""

import argparse
import sys

COMMANDS = {
    "assets": "fetch, list and locate the pretrained assets (minilm, glove50)",
    "demo": "fine-tune MiniLM on an SST-2 sample, evaluate, export, query",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(
            prog="ktransfer",
            description="Transfer learning for NLP with Keras.",
            epilog="\n".join(f"  {name:8s} {text}" for name, text in COMMANDS.items()),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("command", choices=sorted(COMMANDS))
        parser.parse_args(argv[:1] or ["--help"])
        return 2
    command, rest = argv[0], argv[1:]
    if command == "assets":
        from ktransfer.assets import main as assets_main

        return assets_main(rest)
    from ktransfer.demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    sys.exit(main())
