"""normlab's command line: `python run.py norm=group batch_size=2`, sweeps with `-m norm=batch,group`; the same
as `normlab train ...` (normlab.cli.train_command). `--help` lists the keys, `--cfg job` prints the config."""

import sys

from normlab.cli import train_command

if __name__ == "__main__":
    train_command(sys.argv[1:])
