"""normlab's command line: `python run.py norm=group batch_size=2`, sweeps with `-m norm=batch,group`.

See README.md for every key; `python run.py --cfg job` prints the composed config.
"""

import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from normlab.cli import precheck, register_groups, register_resolvers, run_job

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def main(cfg: DictConfig) -> float:
    return run_job(cfg)  # the objective for hparams_search=optuna


def stop(signum, frame):
    """SIGTERM (a scheduler, `kill`) ends a run as Ctrl-C does: the last checkpoint kept, one line, exit 130."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    register_resolvers()
    register_groups(CONF)
    precheck(sys.argv[1:], CONF)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; every finished run and checkpoint is kept
        newline = "\n" if sys.stderr.isatty() else ""  # below the progress bar's line, not on it
        print(f"{newline}interrupted: finished runs and the last checkpoint are kept; re-run the same command to "
              "resume", file=sys.stderr)  # fmt: skip
        sys.exit(130)
