"""normlab's command line: `python run.py norm=group batch_size=2`, sweeps with `-m norm=batch,group`; the same
as `normlab train ...` (normlab.cli.train_command). `--help` lists the keys, `--cfg job` prints the config."""

import sys

if __name__ == "__main__":
    try:
        from normlab.cli import train_command
    except KeyboardInterrupt:  # Ctrl-C during the imports (seconds): nothing has started
        print("interrupted while starting: nothing was run or written", file=sys.stderr)
        sys.exit(130)
    train_command(sys.argv[1:])
