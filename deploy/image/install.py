"""Installs ptc-mcp into the image (run by the Dockerfile's build stage, with the base image's python3).

``install.py SRC PREFIX``: if ``SRC/build/image-packages`` exists (CI builds it from its own environment, for
bases without pip), copy it to ``PREFIX/lib`` (and ``build/image-native``, shared libraries, to ``PREFIX/native``);
otherwise ``pip install --target PREFIX/lib "SRC[$EXTRAS]"``. Standard library only: the base may have nothing else.
"""

import os
import shutil
import subprocess
import sys


def main(source: str, prefix: str) -> int:
    target = os.path.join(prefix, "lib")
    os.makedirs(os.path.join(prefix, "native"), exist_ok=True)
    prebuilt = os.path.join(source, "build", "image-packages")
    if os.path.isdir(prebuilt):
        shutil.copytree(prebuilt, target, dirs_exist_ok=True)
        native = os.path.join(source, "build", "image-native")
        if os.path.isdir(native):
            shutil.copytree(native, os.path.join(prefix, "native"), dirs_exist_ok=True)
        return 0
    extras = os.environ.get("EXTRAS", "agentcore,docker").strip()
    spec = source + (f"[{extras}]" if extras else "")
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-compile", "--target", target, spec]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
