#!/usr/bin/env python3
"""Write the long-request bench split: 20 made-up send_message requests of about 1 KB
("Send a message to Marcus Lee saying ..."), near the host-cpu board's 512-token context.

    python3 scripts/make-long-requests.py > models/assist-moe/data/long.jsonl
    moe-edge bench constrain --grounded --data models/assist-moe/data/long.jsonl --prompts 20

Standard library only, seeded: the file is the same on every run.
"""
import json
import random

WORDS = ("the we meet station where friday is near after weather work cold on road ahead turns long "
         "and").split()


def main():
    rng = random.Random(20261124)
    for _ in range(20):
        words = []
        while len(" ".join(words)) < 970:
            words.append(rng.choice(WORDS))
        text = " ".join(words)
        row = {"messages": [{"role": "user", "content": f"Send a message to Marcus Lee saying {text}"}],
               "expected": {"name": "send_message", "arguments": {"contact": "Marcus Lee", "text": text}},
               "lang": "en", "scenario": "cockpit"}
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
