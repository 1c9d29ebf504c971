"""`python -m deploy`: (re)writes deploy/k8s/ from the configs the tests run.
`python -m deploy --check`: exits 1, naming the files, when deploy/k8s/ is stale."""

from __future__ import annotations

import sys

from deploy import kubernetes


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        if stale := kubernetes.stale():
            print("deploy/k8s is stale (run `python -m deploy`): " + ", ".join(stale),
                  file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    names = kubernetes.write()
    print(f"deploy/k8s: {len(names)} manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
