"""What DRA CEL selectors cost on a 5,000-node × 8-GPU fleet (40,000 devices).

One CEL evaluation is microseconds to tens of microseconds; a scheduler that evaluated every
selector on every device per decision would spend seconds per decision. ``cel_cache`` answers
each distinct kind of device once per selector, so the fleet costs a dict lookup per device.
The synthetic fleet is realistic about what varies per GPU: every device has its own ``uuid``
and ``index`` attributes, which a selector rarely reads; selectors that read only literal
fields are cached on those fields, the others on the whole device.

Prints a table: µs per call (median of repeats) for compile, a DeviceView build, one uncached
evaluation, and per device for a whole-fleet match cold (empty cache) and warm.

    python benchmarks/cel_bench.py [--nodes 5000] [--gpus 8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from corral.devices.cel import compile_selector
from corral.devices.cel_cache import SelectorCache, device_predicate, match_devices
from corral.devices.cel_device import DeviceView

MODELS = [  # (model, memory, driver versions seen on nodes of this model)
    ("A100-SXM4-40GB", "40Gi", ["535.161.7", "550.54.15"]),
    ("A100-SXM4-80GB", "80Gi", ["550.54.15", "550.90.7"]),
    ("H100-SXM5-80GB", "80Gi", ["550.90.7", "560.35.3"]),
    ("L4", "24Gi", ["535.161.7"]),
]
SELECTORS = {
    "driver only": 'device.driver == "gpu.nvidia.com"',
    "model + memory": (
        'device.attributes["gpu.nvidia.com"].productName.startsWith("H100") || '
        'device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("64Gi")) >= 0'
    ),
    "semver + regex": (
        'device.attributes["gpu.nvidia.com"].driverVersion.isGreaterThan(semver("550.0.0")) && '
        'device.attributes["gpu.nvidia.com"].productName.matches("^A100")'
    ),
    "whole device": '"productName" in device.attributes["gpu.nvidia.com"]',
}


def fleet(nodes: int, gpus: int) -> list[dict[str, Any]]:
    devices = []
    for node in range(nodes):
        model, memory, versions = MODELS[node % len(MODELS)]
        version = versions[(node // len(MODELS)) % len(versions)]
        for index in range(gpus):
            devices.append(
                {
                    "name": f"gpu-{index}",
                    "driver": "gpu.nvidia.com",
                    "attributes": {
                        "productName": {"string": model},
                        "driverVersion": {"version": version},
                        "index": {"int": index},
                        "uuid": {"string": f"GPU-{node:05d}-{index}"},
                    },
                    "capacity": {"memory": {"value": memory}},
                }
            )
    return devices


def median_us(run: Callable[[], Any], calls: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000, help="nodes in the synthetic fleet")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--quick", action="store_true", help="500 nodes, 2 repeats (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.repeat = min(args.nodes, 500), min(args.repeat, 2)
    raw = fleet(args.nodes, args.gpus)
    views = [DeviceView.from_node_device(d) for d in raw]
    n = len(views)
    build = median_us(
        lambda: [DeviceView.from_node_device(d) for d in raw[:2000]], 2000, args.repeat
    )
    print(f"fleet: {n} devices; DeviceView build {build:.1f} µs/device\n")
    header = (
        "selector",
        "matches",
        "compile",
        "eval",
        "cold/dev",
        "warm/dev",
        "raw warm/dev",
        "fleet warm",
    )
    print("{:<16} {:>8} {:>9} {:>8} {:>9} {:>9} {:>12} {:>11}".format(*header))
    for label, expression in SELECTORS.items():
        compile_us = median_us(lambda e=expression: compile_selector(e), 1, 20)
        selector = compile_selector(expression)
        sample = views[:500]
        eval_us = median_us(
            lambda s=selector, some=sample: [s.matches(v) for v in some], len(sample), args.repeat
        )
        cold_us = median_us(lambda s=selector: match_devices(s, views, SelectorCache()), n, 1)
        cache = SelectorCache()
        hits = match_devices(selector, views, cache)
        warm_us = median_us(lambda s=selector, c=cache: match_devices(s, views, c), n, args.repeat)
        predicate = device_predicate(expression)
        [predicate(d) for d in raw]
        raw_us = median_us(lambda p=predicate: [p(d) for d in raw], n, args.repeat)
        print(
            f"{label:<16} {sum(hits):>8} {compile_us:>7.1f}µs {eval_us:>6.1f}µs {cold_us:>7.2f}µs "
            f"{warm_us:>7.2f}µs {raw_us:>10.2f}µs {warm_us * n / 1000:>9.1f}ms"
        )
    print(
        "\neval: one uncached evaluation; cold/warm: per device over the whole fleet through"
        "\nSelectorCache (cold starts empty); raw: device_predicate over Node device dicts."
    )


if __name__ == "__main__":
    main()
