"""Print the model zoo as a Markdown table: ``python -m luminet.models [--cifar-classes 100]``.

Builds every registered model (CIFAR models with ``--cifar-classes``, ImageNet models with
``--imagenet-classes``) and reports its parameter count and defining class.
"""

from __future__ import annotations

import argparse

from . import available_models, build_model, get_model_factory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m luminet.models", description=__doc__)
    parser.add_argument("--cifar-classes", type=int, default=100)
    parser.add_argument("--imagenet-classes", type=int, default=1000)
    args = parser.parse_args(argv)
    print("| name | input | num_classes | parameters | class |")
    print("|---|---|---:|---:|---|")
    for name in available_models():
        cifar = ".cifar." in get_model_factory(name).__module__
        classes = args.cifar_classes if cifar else args.imagenet_classes
        model = build_model(name, classes)
        n = sum(p.numel() for p in model.parameters())
        where = f"{type(model).__module__}.{type(model).__name__}"
        print(
            f"| `{name}` | {'CIFAR 32x32' if cifar else 'ImageNet 224x224'} | {classes} | "
            f"{n:,} ({n / 1e6:.2f}M) | `{where}` |"
        )


if __name__ == "__main__":
    main()
