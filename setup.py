"""Ships the checkout's conf/ (Hydra's configs) inside the built package as normlab/conf, so that an installed
normlab (`pip install .`, not editable) finds them (normlab.cli.CONF); everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithConf(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads the checkout's conf/ itself
            target = Path(self.build_lib) / "normlab" / "conf"
            shutil.copytree(Path(__file__).parent / "conf", target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithConf})
